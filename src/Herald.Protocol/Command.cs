using System.Text.Json;
using System.Text.Json.Serialization;

namespace Herald.Protocol;

/// <summary>A client → server command, as sent over WebSocket frames, <c>POST /cmd</c> and polling bodies.</summary>
public sealed class Command
{
    /// <summary>The client's correlation id, echoed in the reply.</summary>
    [JsonPropertyName("id")] public long? Id { get; set; }

    /// <summary>The operation: <c>connect</c>, <c>subscribe</c>, <c>unsubscribe</c>, <c>publish</c>, <c>history</c>, <c>presence</c>, <c>ping</c>, <c>rpc</c>.</summary>
    [JsonPropertyName("op")] public string? Op { get; set; }

    /// <summary>The connection token (<c>connect</c>).</summary>
    [JsonPropertyName("token")] public string? Token { get; set; }

    /// <summary>The channel the command is about.</summary>
    [JsonPropertyName("channel")] public string? Channel { get; set; }

    /// <summary>The position to recover from (<c>subscribe</c>), or to read after (<c>history</c>; before it with <see cref="Reverse"/>).</summary>
    [JsonPropertyName("since")] public SincePosition? Since { get; set; }

    /// <summary>The method to call (<c>rpc</c>): 1 to 64 characters of <c>A-Z a-z 0-9 _ - . :</c>.</summary>
    [JsonPropertyName("method")] public string? Method { get; set; }

    /// <summary>The payload to publish (<c>publish</c>), or the call's argument (<c>rpc</c>).</summary>
    [JsonPropertyName("data")] public JsonElement? Data { get; set; }

    /// <summary>
    /// Bytes to publish, in base64 (RFC 4648, padded), in place of <see cref="Data"/> (<c>publish</c> only). Over
    /// <c>herald.msgpack</c> a <c>data</c> that is a <c>bin</c> arrives here.
    /// </summary>
    [JsonPropertyName("b64")] public string? B64 { get; set; }

    /// <summary>The maximum number of publications to return (<c>history</c>).</summary>
    [JsonPropertyName("limit")] public int? Limit { get; set; }

    /// <summary>Read newest first (<c>history</c>): the publications before <see cref="Since"/>, or the newest.</summary>
    [JsonPropertyName("reverse")] public bool? Reverse { get; set; }

    /// <summary>
    /// Makes a <c>publish</c> idempotent: a repeat of the key on the same channel within the server's
    /// <c>Herald:IdempotencyWindow</c> is answered with the first publication's position and publishes nothing.
    /// 1-128 characters of <c>A-Z a-z 0-9 _ - . : + / =</c>.
    /// </summary>
    [JsonPropertyName("idempotency_key")] public string? IdempotencyKey { get; set; }

    /// <summary>Display information for presence, a JSON object supplied by the client (<c>connect</c>).</summary>
    [JsonPropertyName("info")] public JsonElement? Info { get; set; }

    /// <summary>
    /// The id the client polls with (<c>connect</c>), so that a client moving from polling to this WebSocket stops
    /// being listed twice in presence: each channel it subscribes to drops its poll lease.
    /// </summary>
    [JsonPropertyName("client")] public string? Client { get; set; }
}

/// <summary>
/// A position as the client sends it, <c>{"offset":…,"epoch":…}</c>: a command's <c>since</c> or a channel's cursor in a
/// <see cref="PollRequestBody"/> (both fields are required when the object is present); also a <c>history</c> reply's
/// <c>next</c>, which the client sends back as <c>since</c>.
/// </summary>
public sealed class SincePosition
{
    /// <summary>The last offset the client saw.</summary>
    [JsonPropertyName("offset")] public ulong? Offset { get; set; }

    /// <summary>The epoch that offset belongs to.</summary>
    [JsonPropertyName("epoch")] public string? Epoch { get; set; }
}

/// <summary>
/// The body of <c>POST /poll</c>:
/// <c>{"channels":{"&lt;channel&gt;":{"offset":…,"epoch":…}|null,…},"wait":…,"client":"…","info":{…}}</c>.
/// </summary>
public sealed class PollRequestBody
{
    /// <summary>
    /// The channels to poll, keyed by name, each with the cursor of its latest answer, or <see langword="null"/> (written
    /// as JSON <c>null</c>) for a first poll that only learns the position.
    /// </summary>
    [JsonPropertyName("channels")] public IReadOnlyDictionary<string, SincePosition?>? Channels { get; set; }

    /// <summary>How long, in seconds, the server may hold the poll for news; absent or 0 for a short poll.</summary>
    [JsonPropertyName("wait")] public double? Wait { get; set; }

    /// <summary>The id the client polls with, which makes it present in the polled channels.</summary>
    [JsonPropertyName("client")] public string? Client { get; set; }

    /// <summary>Display information for presence, a JSON object supplied by the client; a token's <c>info</c> claim wins.</summary>
    [JsonPropertyName("info")] public JsonElement? Info { get; set; }
}

/// <summary>
/// The JSON body of the server API's <c>POST /api/publish</c>: <c>{"channel":"…","data":…,"idempotency_key":"…"}</c>, or
/// <c>"b64":"…"</c> in place of <c>"data"</c> to publish bytes.
/// </summary>
public sealed class PublishRequestBody
{
    /// <summary>The channel to publish to.</summary>
    [JsonPropertyName("channel")] public string? Channel { get; set; }

    /// <summary>The payload to publish, any JSON value.</summary>
    [JsonPropertyName("data")] public JsonElement? Data { get; set; }

    /// <summary>Bytes to publish, in base64, in place of <see cref="Data"/>.</summary>
    [JsonPropertyName("b64")] public string? B64 { get; set; }

    /// <summary>Optional; as <see cref="Command.IdempotencyKey"/>.</summary>
    [JsonPropertyName("idempotency_key")] public string? IdempotencyKey { get; set; }
}

/// <summary>Source-generated (reflection-free) JSON metadata for the protocol's inbound types, with the server's strict reader settings.</summary>
/// <remarks>
/// Internal: the members the generator emits (one per type it meets, <c>Int32</c>, <c>NullableUInt64</c>, …) follow the
/// generator's version, not ours. Other readers of the wire declare their own context, as <c>Herald.Client</c> does.
/// </remarks>
[JsonSourceGenerationOptions(
    PropertyNameCaseInsensitive = false,
    ReadCommentHandling = JsonCommentHandling.Disallow,
    AllowTrailingCommas = false,
    NumberHandling = JsonNumberHandling.Strict,
    MaxDepth = 64)]
[JsonSerializable(typeof(Command))]
[JsonSerializable(typeof(PollRequestBody))]
[JsonSerializable(typeof(PublishRequestBody))]
[JsonSerializable(typeof(DisconnectRequestBody))]
[JsonSerializable(typeof(ServerSubscribeRequestBody))]
[JsonSerializable(typeof(ServerUnsubscribeRequestBody))]
internal sealed partial class ProtocolJsonContext : JsonSerializerContext;
