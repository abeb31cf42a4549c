using System.Text.Json;
using System.Text.Json.Serialization;

namespace Herald.AspNetCore.Proxy;

// The proxy's wire, between Herald and the application's backend (docs/protocol.md, "HTTP proxy of hooks"). It is not
// the client protocol, so it lives here rather than in Herald.Protocol.

/// <summary>The body of a connect proxy request.</summary>
internal sealed record ProxyConnectRequest(
    string Client,
    string Transport,
    string User,
    bool Authenticated,
    string? AuthError,
    string? Token,
    string? RemoteAddr);

/// <summary>The body of a subscribe proxy request.</summary>
internal sealed record ProxySubscribeRequest(string Client, string User, string Transport, string Channel, JsonElement? Info);

/// <summary>The body of a publish proxy request: <c>data</c> for JSON, <c>b64</c> (base64) for a binary publication.</summary>
internal sealed record ProxyPublishRequest(string Client, string User, string Transport, string Channel, JsonElement? Data, JsonElement? Info)
{
    /// <summary>A binary publication's bytes, in base64; <see langword="null"/> for JSON.</summary>
    public string? B64 { get; init; }
}

/// <summary>The body of an RPC proxy request.</summary>
internal sealed record ProxyRpcRequest(string Client, string User, string Transport, string Method, JsonElement? Data, JsonElement? Info);

/// <summary>What the backend answers: exactly one of <c>result</c> (an object) and <c>error</c>.</summary>
internal sealed class ProxyAnswer
{
    public JsonElement? Result { get; set; }

    public JsonElement? Error { get; set; }
}

/// <summary>A backend's refusal, passed to the client as written once its shape is checked.</summary>
internal sealed class ProxyErrorBody
{
    public string? Code { get; set; }

    public string? Message { get; set; }
}

/// <summary>The result of a connect: <c>{}</c> follows the token; with <c>user</c>, the backend's answer replaces it.</summary>
internal sealed class ProxyConnectResult
{
    public string? User { get; set; }

    public Dictionary<string, string[]>? Channels { get; set; }

    public JsonElement? Info { get; set; }

    public long? ExpireAt { get; set; }
}

/// <summary>The result of a subscribe (data for the reply), a publish (replacement data) or an RPC (the answer's data).</summary>
internal sealed class ProxyDataResult
{
    public JsonElement? Data { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(ProxyConnectRequest))]
[JsonSerializable(typeof(ProxySubscribeRequest))]
[JsonSerializable(typeof(ProxyPublishRequest))]
[JsonSerializable(typeof(ProxyRpcRequest))]
[JsonSerializable(typeof(ProxyAnswer))]
[JsonSerializable(typeof(ProxyErrorBody))]
[JsonSerializable(typeof(ProxyConnectResult))]
[JsonSerializable(typeof(ProxyDataResult))]
internal sealed partial class ProxyJsonContext : JsonSerializerContext;
