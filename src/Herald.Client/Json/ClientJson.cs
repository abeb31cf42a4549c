using System.Text.Json;
using System.Text.Json.Serialization;

namespace Herald.Client.Json;

/// <summary>One server → client message: a reply (<c>id</c> + <c>result</c> or <c>error</c>) or a push.</summary>
internal sealed class ServerMessage
{
    [JsonPropertyName("id")] public long? Id { get; set; }
    [JsonPropertyName("result")] public JsonElement? Result { get; set; }
    [JsonPropertyName("error")] public ErrorBody? Error { get; set; }
    [JsonPropertyName("push")] public PushBody? Push { get; set; }
}

internal sealed class ErrorBody
{
    [JsonPropertyName("code")] public string? Code { get; set; }
    [JsonPropertyName("message")] public string? Message { get; set; }
}

/// <summary>An HTTP error body <c>{"error":{…}}</c>.</summary>
internal sealed class HttpErrorBody
{
    [JsonPropertyName("error")] public ErrorBody? Error { get; set; }
}

internal sealed class PushBody
{
    [JsonPropertyName("channel")] public string? Channel { get; set; }
    [JsonPropertyName("pub")] public PublicationDto? Pub { get; set; }
}

internal sealed class PublicationDto
{
    [JsonPropertyName("offset")] public ulong Offset { get; set; }
    [JsonPropertyName("data")] public JsonElement Data { get; set; }
    [JsonPropertyName("info")] public InfoDto? Info { get; set; }
}

/// <summary>A publication's <c>info</c> (<c>user</c>, <c>client</c>), or a presence entry (with the client's <c>info</c>).</summary>
internal sealed class InfoDto
{
    [JsonPropertyName("user")] public string? User { get; set; }
    [JsonPropertyName("client")] public string? Client { get; set; }
    [JsonPropertyName("info")] public JsonElement? Info { get; set; }
}

/// <summary>The result of <c>subscribe</c> and <c>history</c>, and one channel entry of a poll answer.</summary>
internal sealed class StreamResult
{
    [JsonPropertyName("epoch")] public string? Epoch { get; set; }
    [JsonPropertyName("offset")] public ulong Offset { get; set; }
    [JsonPropertyName("recovered")] public bool? Recovered { get; set; }
    [JsonPropertyName("publications")] public List<PublicationDto>? Publications { get; set; }
}

internal sealed class PollAnswer
{
    [JsonPropertyName("channels")] public Dictionary<string, StreamResult>? Channels { get; set; }
}

internal sealed class PresenceAnswer
{
    [JsonPropertyName("presence")] public Dictionary<string, InfoDto>? Presence { get; set; }
}

internal sealed class ConnectAnswer
{
    [JsonPropertyName("client")] public string? Client { get; set; }
    [JsonPropertyName("user")] public string? User { get; set; }
    [JsonPropertyName("version")] public string? Version { get; set; }
    [JsonPropertyName("ping")] public double? Ping { get; set; }
}

/// <summary>A client → server command; absent fields are left out of the JSON.</summary>
internal sealed class OutboundCommand
{
    [JsonPropertyName("id")] public long? Id { get; set; }
    [JsonPropertyName("op")] public string Op { get; set; } = "";
    [JsonPropertyName("token")] public string? Token { get; set; }
    [JsonPropertyName("channel")] public string? Channel { get; set; }
    [JsonPropertyName("since")] public CursorDto? Since { get; set; }
    [JsonPropertyName("data")] public JsonElement? Data { get; set; }
    [JsonPropertyName("limit")] public int? Limit { get; set; }
    [JsonPropertyName("info")] public JsonElement? Info { get; set; }
    [JsonPropertyName("client")] public string? Client { get; set; }
}

internal sealed class CursorDto
{
    [JsonPropertyName("offset")] public ulong Offset { get; set; }
    [JsonPropertyName("epoch")] public string Epoch { get; set; } = "";
}

/// <summary>A <c>POST /poll</c> body; a <see langword="null"/> cursor means "no cursor yet".</summary>
internal sealed class PollBody
{
    [JsonPropertyName("channels")] public Dictionary<string, CursorDto?> Channels { get; set; } = new(StringComparer.Ordinal);
    [JsonPropertyName("wait")] public double? Wait { get; set; }
    [JsonPropertyName("client")] public string? Client { get; set; }
    [JsonPropertyName("info")] public JsonElement? Info { get; set; }
}

/// <summary>Source-generated JSON metadata for everything the client reads and writes.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ServerMessage))]
[JsonSerializable(typeof(HttpErrorBody))]
[JsonSerializable(typeof(StreamResult))]
[JsonSerializable(typeof(PollAnswer))]
[JsonSerializable(typeof(PresenceAnswer))]
[JsonSerializable(typeof(ConnectAnswer))]
[JsonSerializable(typeof(OutboundCommand))]
[JsonSerializable(typeof(PollBody))]
internal sealed partial class ClientJsonContext : JsonSerializerContext;
