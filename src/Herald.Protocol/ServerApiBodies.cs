using System.Text.Json.Serialization;

namespace Herald.Protocol;

/// <summary>The body of the server API's <c>POST /api/disconnect</c>: <c>{"user":"…","code":4100,"reason":"…"}</c>.</summary>
public sealed class DisconnectRequestBody
{
    /// <summary>The user whose connections close, on every node.</summary>
    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>The close code, 4100–4999 (<see cref="CloseCodes.ServerDisconnect"/> when absent).</summary>
    [JsonPropertyName("code")] public int? Code { get; set; }

    /// <summary>The close reason, at most 123 bytes of UTF-8 (a WebSocket close frame's limit).</summary>
    [JsonPropertyName("reason")] public string? Reason { get; set; }
}

/// <summary>The body of the server API's <c>POST /api/subscribe</c>: <c>{"user":"…","channel":"…","since":{"offset":…,"epoch":"…"}}</c>.</summary>
public sealed class ServerSubscribeRequestBody
{
    /// <summary>The user whose live connections are subscribed, on every node.</summary>
    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>The channel.</summary>
    [JsonPropertyName("channel")] public string? Channel { get; set; }

    /// <summary>Where the connections start: the publications after it come with the subscribe push. Absent: at the head.</summary>
    [JsonPropertyName("since")] public SincePosition? Since { get; set; }
}

/// <summary>The body of the server API's <c>POST /api/unsubscribe</c>: <c>{"user":"…","channel":"…"}</c>.</summary>
public sealed class ServerUnsubscribeRequestBody
{
    /// <summary>The user whose live connections are unsubscribed, on every node.</summary>
    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>The channel.</summary>
    [JsonPropertyName("channel")] public string? Channel { get; set; }
}
