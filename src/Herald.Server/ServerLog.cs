namespace Herald.Server;

internal static partial class ServerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "Herald:ApiKey is not set; the server API key for this run is: {ApiKey}")]
    public static partial void GeneratedApiKey(ILogger logger, string apiKey);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Herald starting ({Environment}): anonymous access {AllowAnonymous}, namespaces: {Namespaces}")]
    public static partial void Profile(ILogger logger, string environment, bool allowAnonymous, string namespaces);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "The demo pages cannot connect: {Path} is missing. The server's build makes it when Node.js 20+ and npm are installed: install them and build again (or run `npm ci && npm run build` in clients/js).")]
    public static partial void JsClientMissing(ILogger logger, string path);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Kestrel sockets transport: inline scheduling {Inline} (Kestrel:Sockets:UnsafePreferInlineScheduling); WebSocket frames sent on the socket {DirectSend} (Herald:WebSocketDirectSend); WebSocket handed off below HTTP after its handshake {Handoff} (Herald:WebSocketHandoff)")]
    public static partial void Transport(ILogger logger, bool inline, bool directSend, bool handoff);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Garbage collector: {Mode} (Workstation by default; DOTNET_gcServer=1 for Server GC)")]
    public static partial void GarbageCollector(ILogger logger, string mode);
}
