using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.Proxy;

/// <summary>What the hook proxy logs: every failed call to the backend, with what the client was told in docs/protocol.md.</summary>
internal static partial class ProxyLog
{
    [LoggerMessage(EventId = 500, Level = LogLevel.Warning, Message = "Proxy {Hook}: {Url} cannot be reached; the client gets 'unavailable'")]
    public static partial void Unreachable(ILogger logger, Hook hook, Uri url, Exception exception);

    [LoggerMessage(EventId = 501, Level = LogLevel.Warning, Message = "Proxy {Hook}: {Url} did not answer within {TimeoutMs} ms; the client gets 'unavailable'")]
    public static partial void TimedOut(ILogger logger, Hook hook, Uri url, long timeoutMs);

    [LoggerMessage(EventId = 502, Level = LogLevel.Warning, Message = "Proxy {Hook}: {Url} answered HTTP {Status}")]
    public static partial void BadStatus(ILogger logger, Hook hook, Uri url, int status);

    [LoggerMessage(EventId = 503, Level = LogLevel.Warning, Message = "Proxy {Hook}: {Url} answered garbage ({Problem}); the client gets 'internal'")]
    public static partial void InvalidAnswer(ILogger logger, Hook hook, Uri url, string problem);
}
