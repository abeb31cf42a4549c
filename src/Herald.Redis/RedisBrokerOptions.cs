namespace Herald.Redis;

/// <summary>Where the Redis broker and presence store keep their data; bound from <c>Herald:Redis</c>.</summary>
public sealed class RedisBrokerOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Herald:Redis";

    /// <summary>A StackExchange.Redis configuration string, e.g. <c>localhost:6379</c> (<c>Herald:Redis:Configuration</c>).</summary>
    public string? Configuration { get; set; }

    /// <summary>The first part of every key and Pub/Sub channel name, so several Heralds can share one Redis (<c>Herald:Redis:Prefix</c>).</summary>
    public string Prefix { get; set; } = "herald";

    /// <summary>
    /// How often the broker compares, for every channel this node receives, the channel's head in Redis with what it
    /// delivered, to find publications that never reached it by Pub/Sub (<c>Herald:Redis:PositionCheckInterval</c>,
    /// default 5 s). One pipelined read covers all channels. A gap found is filled from the channel's history; a
    /// publication that never arrived is found within two intervals (a check counts as missing only what was already
    /// published at the one before, so publications still on their way are not read twice).
    /// </summary>
    public TimeSpan PositionCheckInterval { get; set; } = TimeSpan.FromSeconds(5);
}
