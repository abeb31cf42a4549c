using Microsoft.Extensions.Logging;

namespace Herald.Redis;

internal static partial class RedisLog
{
    [LoggerMessage(EventId = 500, Level = LogLevel.Warning, Message = "Redis is not reachable yet; the broker answers 'unavailable' until it is")]
    public static partial void NotConnectedAtStart(ILogger logger);

    [LoggerMessage(EventId = 501, Level = LogLevel.Error, Message = "A message on the Pub/Sub channel of {Channel} is not a Herald publication; dropped")]
    public static partial void MalformedMessage(ILogger logger, string channel);

    [LoggerMessage(EventId = 502, Level = LogLevel.Error, Message = "Handling publication {Offset} of {Channel} failed")]
    public static partial void HandlerFailed(ILogger logger, string channel, ulong offset, Exception exception);
}
