namespace Herald.Sessions;

/// <summary>What a <see cref="ClientSession"/> needs from the transport that carries it.</summary>
internal interface ISessionTransport
{
    /// <summary>The transport's name, as reported in stats (<c>websocket</c>).</summary>
    string Name { get; }

    /// <summary>
    /// The headers of the request that opened the connection (the WebSocket handshake), by case-insensitive name, for
    /// the connect handler. Read only when a handler is registered, so an adapter over the live request is enough.
    /// </summary>
    IReadOnlyDictionary<string, string> Headers => NoHeaders;

    /// <summary>How the connection encodes messages (its subprotocol); the session reads and writes that encoding.</summary>
    Protocol.WireEncoding Encoding => Protocol.WireEncoding.Json;

    /// <summary>The client's IP address as the server sees it, or <see langword="null"/>.</summary>
    string? RemoteAddress => null;

    private static readonly IReadOnlyDictionary<string, string> NoHeaders =
        new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase).AsReadOnly();

    /// <summary>
    /// Called once, when <c>connect</c> has succeeded, so that the transport can drop what only guarded the wait for it
    /// (the WebSocket's connect timer): an idle connection should hold nothing it no longer needs.
    /// </summary>
    void Connected()
    {
    }

    /// <summary>
    /// Called after each message is queued on the session's <see cref="ClientSession.Outbound"/>, on the thread that
    /// queued it, for a transport that writes as soon as a message arrives instead of waiting on the queue's reader.
    /// </summary>
    void Queued()
    {
    }

    /// <summary>
    /// Starts closing the connection with <paramref name="code"/> (a <see cref="Protocol.CloseCodes"/> value).
    /// Returns at once; the transport finishes the close on its own.
    /// </summary>
    void Close(int code, string reason);
}
