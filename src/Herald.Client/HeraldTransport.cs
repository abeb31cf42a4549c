namespace Herald.Client;

/// <summary>The ways a <see cref="HeraldClient"/> can reach the server.</summary>
public enum HeraldTransport
{
    /// <summary>One long-lived WebSocket on <c>/ws</c> (subprotocol <c>herald.json</c>).</summary>
    WebSocket,

    /// <summary><c>POST /poll</c> held by the server until news arrives; commands over <c>POST /cmd</c>.</summary>
    LongPoll,

    /// <summary><c>POST /poll</c> answered at once, repeated at an interval; commands over <c>POST /cmd</c>.</summary>
    ShortPoll,

    /// <summary>One long-lived <c>GET /sse</c> (Server-Sent Events) carrying every subscription; commands over <c>POST /cmd</c>.</summary>
    Sse,
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
