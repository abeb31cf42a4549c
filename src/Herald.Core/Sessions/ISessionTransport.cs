namespace Herald.Sessions;

/// <summary>What a <see cref="ClientSession"/> needs from the transport that carries it.</summary>
internal interface ISessionTransport
{
    /// <summary>The transport's name, as reported in stats (<c>websocket</c>).</summary>
    string Name { get; }

    /// <summary>
    /// Starts closing the connection with <paramref name="code"/> (a <see cref="Protocol.CloseCodes"/> value).
    /// Returns at once; the transport finishes the close on its own.
    /// </summary>
    void Close(int code, string reason);
}
