using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Runtime.InteropServices;
using Herald.Brokers;
using Herald.Presence;
using Herald.Protocol;
using StackExchange.Redis;
using ClientInfo = Herald.Protocol.ClientInfo;
using StreamPosition = Herald.Protocol.StreamPosition;

namespace Herald.Redis;

/// <summary>
/// Presence shared by every node on one Redis. A channel's members are a hash (client id → member); a member is
/// listed while its node's heartbeat key exists. Poll leases are a sorted set scored by expiry, with their data in a
/// hash beside it; expired ones are never listed and are removed by the next touch.
/// </summary>
/// <remarks>
/// Times are the Redis server's clock, so nodes with skewed clocks agree on what has expired. Failures to reach
/// Redis are thrown as <see cref="BrokerUnavailableException"/>.
/// </remarks>
public sealed class RedisPresenceStore : IPresenceStore
{
    /// <summary>How long a node counts as alive after adding its first member, before its first heartbeat.</summary>
    private static readonly TimeSpan FirstMemberNodeLifetime = TimeSpan.FromMinutes(1);

    // KEYS: leases, lease-data. ARGV: client, user, entry, ttl ms, max leases. Returns 1 when listed, 0 when refused.
    private const string TouchLeaseScript = """
        local leases, data = KEYS[1], KEYS[2]
        local client, user, entry, ttl, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. now)
        if #expired > 0 then
          redis.call('ZREM', leases, unpack(expired))
          redis.call('HDEL', data, unpack(expired))
        end
        local existing = redis.call('HGET', data, client)
        if existing then
          local length = tonumber(string.match(existing, '^(%d+):'))
          local holder = string.sub(existing, #tostring(length) + 2, #tostring(length) + 1 + length)
          if holder ~= user then return 0 end
        elseif redis.call('ZCARD', leases) >= max then
          return 0
        end
        -- GT: a touch moves the end later, never earlier.
        redis.call('ZADD', leases, 'GT', now + ttl, client)
        redis.call('HSET', data, client, #user .. ':' .. user .. entry)
        -- The keys go with their last lease, so a channel nobody polls any more leaves nothing behind.
        if redis.call('PTTL', leases) < ttl then
          redis.call('PEXPIRE', leases, ttl)
          redis.call('PEXPIRE', data, ttl)
        end
        return 1
        """;

    // KEYS: leases, lease-data. ARGV: client, user.
    private const string EndLeaseScript = """
        local leases, data = KEYS[1], KEYS[2]
        local client, user = ARGV[1], ARGV[2]
        local existing = redis.call('HGET', data, client)
        if not existing then return 0 end
        local length = tonumber(string.match(existing, '^(%d+):'))
        if string.sub(existing, #tostring(length) + 2, #tostring(length) + 1 + length) ~= user then return 0 end
        redis.call('ZREM', leases, client)
        redis.call('HDEL', data, client)
        return 1
        """;

    // KEYS: members, leases, lease-data. Returns { members as field, value, …; live lease entries }.
    private const string ListScript = """
        local members, leases, data = KEYS[1], KEYS[2], KEYS[3]
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local live = redis.call('ZRANGEBYSCORE', leases, now, '+inf')
        local entries = {}
        if #live > 0 then
          entries = redis.call('HMGET', data, unpack(live))
        end
        return { redis.call('HGETALL', members), entries }
        """;

    // KEYS: members. ARGV: client, entry, client, entry, … Deletes each member whose entry is still the one given (the
    // entry names its node, which was found dead); one re-added since (a live node's) stays. Returns how many went.
    private const string DeleteDeadScript = """
        local members = KEYS[1]
        local deleted = 0
        for i = 1, #ARGV, 2 do
          if redis.call('HGET', members, ARGV[i]) == ARGV[i + 1] then
            deleted = deleted + redis.call('HDEL', members, ARGV[i])
          end
        end
        return deleted
        """;

    private readonly RedisConnection _connection;
    private readonly RedisKeys _keys;
    private readonly int _maxLeasesPerChannel;
    // The members this process added, per (channel, client): what a node writes again when it finds that its heartbeat
    // lapsed (Redis unreachable or paused for longer than PresenceNodeTimeout), since another node may then have deleted
    // them as a dead node's.
    private readonly ConcurrentDictionary<(string Channel, string Client), (string Node, byte[] Entry)> _own = new();
    // Nodes whose heartbeat lapsed at the previous refresh: their members are written again once more, in case a
    // listing that saw the node dead deleted them just after they were first written again.
    private readonly ConcurrentDictionary<string, bool> _lapsed = new(StringComparer.Ordinal);
    private long _deleted;

    /// <summary>Creates a store on a connection the caller owns (and disposes after the store).</summary>
    /// <param name="multiplexer">The connection to Redis.</param>
    /// <param name="options">The key prefix.</param>
    /// <param name="heraldOptions">The lease limit (<see cref="HeraldOptions.MaxPollPresencePerChannel"/>).</param>
    public RedisPresenceStore(IConnectionMultiplexer multiplexer, RedisBrokerOptions options, HeraldOptions heraldOptions)
        : this(new RedisConnection(multiplexer), options, heraldOptions)
    {
    }

    internal RedisPresenceStore(RedisConnection connection, RedisBrokerOptions options, HeraldOptions heraldOptions)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(heraldOptions);
        _connection = connection;
        _keys = new RedisKeys(options.Prefix);
        _maxLeasesPerChannel = heraldOptions.MaxPollPresencePerChannel;
    }

    /// <inheritdoc/>
    public async ValueTask AddAsync(string channel, ClientInfo member, string node, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(member);
        var database = await DatabaseAsync(cancellationToken);
        var entry = Encode(member, node);
        // A node is alive from its first member on; its heartbeat keeps it so.
        var alive = database.StringSetAsync(_keys.Node(node), 1, FirstMemberNodeLifetime, When.NotExists);
        var added = database.HashSetAsync(_keys.Members(channel), member.Client, entry);
        _own[(channel, member.Client)] = (node, entry);
        try
        {
            await RedisErrors.GuardAsync(Task.WhenAll(alive, added), cancellationToken);
        }
        catch
        {
            // The subscribe fails with it and nobody will remove the member: a lapsed heartbeat must not write it back.
            _own.TryRemove(KeyValuePair.Create((channel, member.Client), (node, entry)));
            throw;
        }
    }

    /// <inheritdoc/>
    public async ValueTask RemoveAsync(string channel, string client, CancellationToken cancellationToken = default)
    {
        _own.TryRemove((channel, client), out _);
        var database = await DatabaseAsync(cancellationToken);
        await RedisErrors.GuardAsync(database.HashDeleteAsync(_keys.Members(channel), client), cancellationToken);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// When the heartbeat had lapsed (the key was gone: Redis was out of reach, or paused, for longer than the TTL),
    /// other nodes may have deleted this node's members as a dead node's, so they are written again, at this refresh and
    /// the next.
    /// </remarks>
    public async ValueTask RefreshNodeAsync(string node, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken);
        var previous = await RedisErrors.GuardAsync(database.StringSetAndGetAsync(_keys.Node(node), 1, ttl), cancellationToken);
        var lapsed = previous.IsNull;
        var again = _lapsed.TryRemove(node, out _);
        if (!lapsed && !again)
        {
            return;
        }
        if (lapsed)
        {
            _lapsed[node] = true;
        }
        var writes = new List<Task>();
        foreach (var ((channel, client), (owner, entry)) in _own)
        {
            if (owner == node)
            {
                writes.Add(database.HashSetAsync(_keys.Members(channel), client, entry));
            }
        }
        await RedisErrors.GuardAsync(Task.WhenAll(writes), cancellationToken);
    }

    /// <summary>How many members of dead nodes this store deleted (for tests).</summary>
    internal long DeletedCount => Interlocked.Read(ref _deleted);

    /// <inheritdoc/>
    public async ValueTask<bool> TouchLeaseAsync(string channel, string client, string user, JsonElement? info, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken);
        RedisValue[] args =
        [
            client,
            user,
            Encode(new ClientInfo(user, client) { Info = info }, node: null),
            Math.Max(1, (long)ttl.TotalMilliseconds),
            _maxLeasesPerChannel,
        ];
        var result = await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(TouchLeaseScript, [_keys.Leases(channel), _keys.LeaseData(channel)], args), cancellationToken);
        return (long)result == 1;
    }

    /// <inheritdoc/>
    public async ValueTask EndLeaseAsync(string channel, string client, string user, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken);
        await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(EndLeaseScript, [_keys.Leases(channel), _keys.LeaseData(channel)], [client, user]), cancellationToken);
    }

    /// <inheritdoc/>
    public async ValueTask<IReadOnlyCollection<ClientInfo>> ListAsync(string channel, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken);
        var result = (RedisResult[])(await RedisErrors.GuardAsync(
            database.ScriptEvaluateAsync(ListScript, [_keys.Members(channel), _keys.Leases(channel), _keys.LeaseData(channel)]), cancellationToken))!;
        var memberFields = (RedisResult[])result[0]!;
        var leaseEntries = (RedisResult[])result[1]!;

        var members = new List<(ClientInfo Info, string Node, byte[] Entry)>(memberFields.Length / 2);
        for (var i = 0; i + 1 < memberFields.Length; i += 2)
        {
            var entry = (byte[])memberFields[i + 1]!;
            if (Decode(entry) is { } member)
            {
                members.Add((member.Info, member.Node ?? "", entry));
            }
        }
        // Node keys live on their own slots, so they are asked one by one (pipelined), not with one MGET.
        var nodes = members.Select(m => m.Node).Distinct(StringComparer.Ordinal).ToArray();
        var alive = await RedisErrors.GuardAsync(Task.WhenAll(nodes.Select(n => database.KeyExistsAsync(_keys.Node(n)))), cancellationToken);
        var live = new HashSet<string>(nodes.Where((_, i) => alive[i]), StringComparer.Ordinal);

        await DeleteDeadAsync(database, channel, members, live, cancellationToken);

        var listed = new List<ClientInfo>(members.Count + leaseEntries.Length);
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (info, node, _) in members)
        {
            if (live.Contains(node) && ids.Add(info.Client))
            {
                listed.Add(info);
            }
        }
        foreach (var raw in leaseEntries)
        {
            var value = (byte[]?)raw;
            if (value is null)
            {
                continue; // expired and removed between the two reads of the script: not listed
            }
            // "<user byte length>:<user><member JSON>"
            var colon = Array.IndexOf(value, (byte)':');
            if (colon < 0 || !int.TryParse(value.AsSpan(0, colon), out var userLength) || colon + 1 + userLength > value.Length)
            {
                continue;
            }
            // One entry per client id: a WebSocket member wins over a poll lease that claims its id.
            if (Decode(value[(colon + 1 + userLength)..]) is { } lease && ids.Add(lease.Info.Client))
            {
                listed.Add(lease.Info);
            }
        }
        return listed;
    }

    /// <summary>
    /// Deletes the members of <paramref name="channel"/> whose node's heartbeat has expired (the node crashed, or was
    /// cut off from Redis for longer than <c>PresenceNodeTimeout</c>), so a crashed node leaves nothing behind in the
    /// channels whose presence is listed. Each is deleted only if its entry is still the one read; an entry Herald cannot
    /// read is left alone.
    /// </summary>
    private async Task DeleteDeadAsync(IDatabase database, string channel, List<(ClientInfo Info, string Node, byte[] Entry)> members, HashSet<string> live, CancellationToken cancellationToken)
    {
        List<RedisValue>? dead = null;
        foreach (var (info, node, entry) in members)
        {
            if (!live.Contains(node))
            {
                dead ??= [];
                dead.Add(info.Client);
                dead.Add(entry);
            }
        }
        if (dead is null)
        {
            return;
        }
        var deleted = await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(DeleteDeadScript, [_keys.Members(channel)], [.. dead]), cancellationToken);
        Interlocked.Add(ref _deleted, (long)deleted);
    }

    /// <inheritdoc/>
    /// <remarks>The connection is not this store's: whoever made it (the caller, or the service container) closes it.</remarks>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private async ValueTask<IDatabase> DatabaseAsync(CancellationToken cancellationToken) =>
        (await _connection.GetAsync(cancellationToken)).GetDatabase();

    /// <summary><c>{"user":…,"client":…,"info":{…},"node":…}</c>; info and node only when there are some.</summary>
    private static byte[] Encode(ClientInfo member, string? node)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("user", member.User);
            writer.WriteString("client", member.Client);
            if (member.Info is { } info)
            {
                writer.WritePropertyName("info");
                writer.WriteRawValue(JsonMarshal.GetRawUtf8Value(info), skipInputValidation: true);
            }
            if (node is not null)
            {
                writer.WriteString("node", node);
            }
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static (ClientInfo Info, string? Node)? Decode(byte[] json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            var root = document.RootElement;
            var info = new ClientInfo(root.GetProperty("user").GetString() ?? "", root.GetProperty("client").GetString() ?? "")
            {
                Info = root.TryGetProperty("info", out var i) ? i.Clone() : null,
            };
            return (info, root.TryGetProperty("node", out var n) ? n.GetString() : null);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            return null; // not written by Herald: not listed
        }
    }
}
