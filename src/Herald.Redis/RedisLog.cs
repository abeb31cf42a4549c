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

    [LoggerMessage(EventId = 503, Level = LogLevel.Information, Message = "Publications {From} to {To} of {Channel} (epoch {Epoch}) did not arrive by Pub/Sub; delivered from history")]
    public static partial void GapFilled(ILogger logger, string channel, string epoch, ulong from, ulong to);

    [LoggerMessage(EventId = 504, Level = LogLevel.Warning, Message = "Publications {From} to {To} of {Channel} (epoch {Epoch}) did not arrive by Pub/Sub and are no longer in history; its subscribers are closed to recover")]
    public static partial void GapNotFillable(ILogger logger, string channel, string epoch, ulong from, ulong to);

    [LoggerMessage(EventId = 505, Level = LogLevel.Warning, Message = "The head of {Channel} in Redis ({Head}) is lower than this node delivered ({Delivered}) in epoch {Epoch}: Redis lost writes; the channel now has epoch {NewEpoch}")]
    public static partial void EpochRenewed(ILogger logger, string channel, string epoch, ulong head, ulong delivered, string newEpoch);

    [LoggerMessage(EventId = 506, Level = LogLevel.Warning, Message = "The log of {Channel} (epoch {Epoch}) is gone from Redis; its next publication starts a new epoch")]
    public static partial void LogLost(ILogger logger, string channel, string epoch);

    [LoggerMessage(EventId = 507, Level = LogLevel.Warning, Message = "Checking the positions of the subscribed channels failed; the next check tries again")]
    public static partial void PositionCheckFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 508, Level = LogLevel.Warning, Message = "The {ConnectionType} connection to Redis failed ({FailureType}); publications may be missed until it is restored and checked")]
    public static partial void ConnectionFailed(ILogger logger, StackExchange.Redis.ConnectionType connectionType, StackExchange.Redis.ConnectionFailureType failureType, Exception? exception);

    [LoggerMessage(EventId = 509, Level = LogLevel.Information, Message = "The {ConnectionType} connection to Redis is restored; checking the positions of the subscribed channels")]
    public static partial void ConnectionRestored(ILogger logger, StackExchange.Redis.ConnectionType connectionType);

    [LoggerMessage(EventId = 510, Level = LogLevel.Warning, Message = "Filling a gap in {Channel} failed; what follows is delivered, and its subscribers are closed to recover")]
    public static partial void FillFailed(ILogger logger, string channel, Exception exception);

    [LoggerMessage(EventId = 511, Level = LogLevel.Warning, Message = "Subscribing to the control channel failed; retried at the next position check (until then this node misses disconnects and server-side subscribes)")]
    public static partial void ControlSubscribeFailed(ILogger logger, Exception exception);
}
