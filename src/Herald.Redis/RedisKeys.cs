using StackExchange.Redis;

namespace Herald.Redis;

/// <summary>
/// The names of everything Herald keeps in Redis. A channel's keys share the hash tag <c>{channel}</c>
/// (<c>herald:{chat:lobby}:meta</c>), so on a Redis Cluster they sit on one slot and one script can use them all.
/// Channel names cannot contain braces (<c>ChannelName</c>), so the tag is always the whole name.
/// </summary>
internal sealed class RedisKeys(string prefix)
{
    /// <summary>A hash: <c>head</c> (the last offset) and <c>epoch</c>; lost together, so offsets never restart inside an epoch.</summary>
    public RedisKey Meta(string channel) => $"{prefix}:{{{channel}}}:meta";

    /// <summary>The history: a Stream whose entry ids are <c>&lt;offset&gt;-0</c>.</summary>
    public RedisKey Stream(string channel) => $"{prefix}:{{{channel}}}:stream";

    /// <summary>
    /// The Pub/Sub channel the channel's publications are published on. It carries the channel's hash tag, so on a Redis
    /// Cluster (sharded Pub/Sub) it lives on the slot of the channel's keys.
    /// </summary>
    public string PubSub(string channel) => $"{prefix}:{{{channel}}}:pub";

    /// <summary>
    /// An idempotency key seen on the channel: <c>"&lt;offset&gt; &lt;epoch&gt;"</c> of the first publication with it, expiring
    /// after the window. Keys are restricted to characters that need no escaping here (no braces among them).
    /// </summary>
    public RedisKey Idempotency(string channel, string key) => $"{prefix}:{{{channel}}}:idem:{key}";

    /// <summary>A hash of the channel's members: client id → member JSON.</summary>
    public RedisKey Members(string channel) => $"{prefix}:{{{channel}}}:members";

    /// <summary>A sorted set of the channel's poll leases: client id scored by expiry (Unix ms, Redis clock).</summary>
    public RedisKey Leases(string channel) => $"{prefix}:{{{channel}}}:leases";

    /// <summary>A hash of the channel's poll leases: client id → <c>&lt;user byte length&gt;:&lt;user&gt;&lt;member JSON&gt;</c>.</summary>
    public RedisKey LeaseData(string channel) => $"{prefix}:{{{channel}}}:lease-data";

    /// <summary>
    /// The classic Pub/Sub channel of control messages between nodes (<c>IBroker.SendControlAsync</c>). Classic even on
    /// a Cluster, where a <c>PUBLISH</c> reaches every node's subscribers: control messages are rare, and one channel that
    /// every node hears needs no shard.
    /// </summary>
    public string Control => $"{prefix}:control";

    /// <summary>A node's heartbeat; it exists while the node is alive.</summary>
    public RedisKey Node(string node) => $"{prefix}:node:{node}";
}
