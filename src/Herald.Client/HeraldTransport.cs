namespace Herald.Client;

/// <summary>The ways a <see cref="HeraldClient"/> can reach the server.</summary>
public enum HeraldTransport
{
    /// <summary>One long-lived WebSocket on <c>/ws</c> (subprotocol <c>herald.json</c> or <c>herald.msgpack</c>, see <see cref="HeraldClientOptions.Protocol"/>).</summary>
    WebSocket,

    /// <summary><c>POST /poll</c> held by the server until news arrives; commands over <c>POST /cmd</c>.</summary>
    LongPoll,

    /// <summary><c>POST /poll</c> answered at once, repeated at an interval; commands over <c>POST /cmd</c>.</summary>
    ShortPoll,

    /// <summary>One long-lived <c>GET /sse</c> (Server-Sent Events) carrying every subscription; commands over <c>POST /cmd</c>.</summary>
    Sse,
}

/// <summary>How the WebSocket transport encodes messages: its subprotocol. Polling always speaks JSON.</summary>
public enum HeraldProtocol
{
    /// <summary><c>herald.json</c>: JSON text frames; bytes travel as base64.</summary>
    Json,

    /// <summary><c>herald.msgpack</c>: MessagePack binary frames; bytes travel as they are.</summary>
    MsgPack,
}

/// <summary>The connection state of a <see cref="HeraldClient"/>.</summary>
public enum HeraldConnectionState
{
    /// <summary>Not connected: not started yet, between attempts, or disposed.</summary>
    Disconnected,

    /// <summary>Trying a transport.</summary>
    Connecting,

    /// <summary>Connected over <see cref="HeraldClient.Transport"/>.</summary>
    Connected,
}
