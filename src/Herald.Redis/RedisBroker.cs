using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using Herald.Brokers;
using Herald.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;
using ClientInfo = Herald.Protocol.ClientInfo;
using StreamPosition = Herald.Protocol.StreamPosition;

namespace Herald.Redis;

/// <summary>
/// The scale-out broker: every node of a Herald shares one Redis (or Valkey). A channel's log is a Redis Stream, its
/// head and epoch a hash beside it, and its publications fan out to nodes on a Pub/Sub channel.
/// </summary>
/// <remarks>
/// <para><b>Append and publish are atomic per channel; offsets are gap-free within an epoch.</b> One Lua script gives
/// the next offset, appends to the stream, trims it and publishes, so Redis (which runs one script at a time) hands
/// the publications of a channel to Pub/Sub in offset order.</para>
/// <para>Each subscribed channel is read from its own <see cref="ChannelMessageQueue"/>, one message at a time, so the
/// node receives each channel in offset order.</para>
/// <para><b>No silent loss.</b> Pub/Sub is fire-and-forget: a dropped connection or a lost message leaves a hole. So the
/// broker remembers, per subscribed channel, the last offset and epoch it delivered, and fills any hole from the
/// channel's Stream before it delivers what follows, in order. It finds holes three ways: a Pub/Sub message whose offset
/// is past the next one; the connection's failed and restored events; and a periodic check
/// (<see cref="RedisBrokerOptions.PositionCheckInterval"/>) that reads the heads of all subscribed channels in one
/// pipelined batch, which also finds a trailing hole no later publication reveals. When history no longer holds the
/// missing publications (trimmed by size or TTL), the broker delivers what follows anyway: the node's subscriptions see
/// the offsets skip and close their clients with 4004 (insufficient state), and the clients recover with <c>since</c>,
/// getting <c>recovered:false</c>. Offsets already delivered are dropped as duplicates.</para>
/// <para>A head in Redis lower than what this node delivered in the same epoch means Redis lost writes (a failover to a
/// replica that lagged, a restore from an old file): the broker gives the channel a new epoch rather than letting offsets
/// be reused, and a log gone from Redis gets a new epoch at its next publication or read.</para>
/// <para><b>Redis Cluster.</b> Every key of a channel carries its hash tag, so each script touches one slot. On a Cluster
/// (decided once, when the broker first finds the connection up: at start, or at its first call after) publications go
/// by sharded Pub/Sub (<c>SPUBLISH</c>, <c>SSUBSCRIBE</c>, Redis 7), on a Pub/Sub channel with the same hash tag: only
/// the shard that holds the channel carries its messages, rather than every shard all of them.</para>
/// <para>A channel's epoch is random, made when its log is: by its first publication, or by a read before it (then it
/// expires after a day unless something is published). It goes with the head: losing them (Redis restarted without
/// persistence, the key evicted) starts a new epoch, which clients see as <c>recovered:false</c>.</para>
/// <para>Redis failures that mean it cannot be reached (connection, timeout, loading, read-only replica) are thrown as
/// <see cref="BrokerUnavailableException"/>; StackExchange.Redis's timeouts bound how long a call waits.</para>
/// </remarks>
public sealed partial class RedisBroker : IBroker
{
    /// <summary>How long an epoch made by a read lives without a publication.</summary>
    internal static readonly TimeSpan UnpublishedEpochLifetime = TimeSpan.FromDays(1);

    private const int PubSubUndecided = 0;
    private const int PubSubClassic = 1;
    private const int PubSubSharded = 2;

    private readonly RedisConnection _connection;
    private readonly RedisKeys _keys;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, ChannelState> _subscriptions = new(StringComparer.Ordinal);
    private readonly TimeSpan _positionCheckInterval;
    private int _pubSubMode; // PubSubUndecided, PubSubClassic or PubSubSharded
    private IBrokerEventHandler? _handler;
    private ChannelMessageQueue? _control;
    private int _disposed;

    /// <summary>Creates a broker on a connection the caller owns (and disposes after the broker).</summary>
    /// <param name="multiplexer">The connection to Redis.</param>
    /// <param name="options">The key prefix (its <see cref="RedisBrokerOptions.Configuration"/> is not used).</param>
    /// <param name="logger">Where failures to deliver are logged.</param>
    public RedisBroker(IConnectionMultiplexer multiplexer, RedisBrokerOptions options, ILogger<RedisBroker>? logger = null)
        : this(new RedisConnection(multiplexer), options, logger)
    {
    }

    internal RedisBroker(RedisConnection connection, RedisBrokerOptions options, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        _connection = connection;
        if (options.PositionCheckInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException("Herald:Redis:PositionCheckInterval must be positive.", nameof(options));
        }
        _keys = new RedisKeys(options.Prefix);
        _logger = logger ?? NullLogger.Instance;
        _positionCheckInterval = options.PositionCheckInterval;
        // Read once: messages may still arrive after disposal has disposed the source, and must see it cancelled.
        _stoppingToken = _stopping.Token;
    }

    /// <inheritdoc/>
    public async ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _handler = handler;
        // Connect now, so a node that cannot reach Redis says so at start, in the log, rather than at the first call.
        var multiplexer = await _connection.GetAsync(cancellationToken);
        if (!multiplexer.IsConnected)
        {
            RedisLog.NotConnectedAtStart(_logger);
        }
        _ = IsSharded(multiplexer);
        await TrySubscribeControlAsync(multiplexer);
        StartChecking(multiplexer);
    }

    /// <inheritdoc/>
    /// <remarks>A classic <c>PUBLISH</c> on <c>&lt;prefix&gt;:control</c>, on a Cluster too (every node's subscribers hear it).</remarks>
    public async ValueTask SendControlAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default)
    {
        _ = _handler ?? throw new InvalidOperationException("Start the broker before sending control messages.");
        var multiplexer = await _connection.GetAsync(cancellationToken);
        await RedisErrors.GuardAsync(multiplexer.GetSubscriber().PublishAsync(RedisChannel.Literal(_keys.Control), message), cancellationToken);
    }

    /// <summary>
    /// Subscribes to the control channel unless done: at start, and at each position check until it worked (Redis may
    /// be down at start). StackExchange.Redis renews the subscription itself after a reconnection.
    /// </summary>
    private async Task TrySubscribeControlAsync(IConnectionMultiplexer multiplexer)
    {
        if (Volatile.Read(ref _control) is not null || !multiplexer.IsConnected)
        {
            return;
        }
        try
        {
            var queue = await multiplexer.GetSubscriber().SubscribeAsync(RedisChannel.Literal(_keys.Control));
            // One message at a time, in the order Redis sent them (a callback subscription gives no order).
            queue.OnMessage(message =>
            {
                if (_handler is { } handler && !message.Message.IsNull)
                {
                    handler.HandleControl((byte[])message.Message!);
                }
            });
            Volatile.Write(ref _control, queue);
        }
        catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
        {
            RedisLog.ControlSubscribeFailed(_logger, ex);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
        (await PublishAsync(channel, data, info, history, idempotency: null, kind, cancellationToken)).Position;

    /// <inheritdoc/>
    public ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey idempotency, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(idempotency.Key, nameof(idempotency));
        return PublishAsync(channel, data, info, history, (IdempotencyKey?)idempotency, kind, cancellationToken);
    }

    private async ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey? idempotency, PayloadKind kind, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        _ = _handler ?? throw new InvalidOperationException("Start the broker before publishing.");
        var multiplexer = await _connection.GetAsync(cancellationToken);
        var database = multiplexer.GetDatabase();
        RedisValue[] args =
        [
            data,
            info is null ? "0" : "1",
            info?.User ?? "",
            info?.Client ?? "",
            Math.Max(0, history.Size),
            Math.Max(0, (long)history.Ttl.TotalMilliseconds),
            NewEpoch(),
            _keys.PubSub(channel),
            IsSharded(multiplexer) ? "1" : "0",
            idempotency is { } window ? Math.Max(1, (long)window.Window.TotalMilliseconds) : RedisValue.EmptyString,
            kind == PayloadKind.Binary ? "b" : "d",
        ];
        RedisKey[] keys = idempotency is { } idem
            ? [_keys.Meta(channel), _keys.Stream(channel), _keys.Idempotency(channel, idem.Key)]
            : [_keys.Meta(channel), _keys.Stream(channel)];
        var result = await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(RedisScripts.Publish, keys, args), cancellationToken);
        var parts = (RedisResult[])result!;
        return new PublishResult(new StreamPosition((ulong)parts[0], (string)parts[1]!), Repeated: (long)parts[3] == 1);
    }

    /// <inheritdoc/>
    public ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
        ReadAsync(channel, afterOffset, limit, history, backward: false, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<HistoryResult> ReadHistoryBackwardAsync(string channel, ulong? beforeOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
        ReadAsync(channel, beforeOffset, limit, history, backward: true, cancellationToken);

    private async ValueTask<HistoryResult> ReadAsync(string channel, ulong? cursor, int limit, HistoryPolicy history, bool backward, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var database = (await _connection.GetAsync(cancellationToken)).GetDatabase();
        RedisValue[] args =
        [
            cursor is { } at ? at.ToString(CultureInfo.InvariantCulture) : "",
            Math.Max(0, limit),
            history.Ttl > TimeSpan.Zero ? (long)history.Ttl.TotalMilliseconds : 0,
            NewEpoch(),
            (long)UnpublishedEpochLifetime.TotalMilliseconds,
            backward ? "1" : "0",
        ];
        var result = await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(RedisScripts.Read, [_keys.Meta(channel), _keys.Stream(channel)], args), cancellationToken);
        var parts = (RedisResult[])result!;
        var position = new StreamPosition((ulong)parts[0], (string)parts[1]!);
        var entries = (RedisResult[])parts[2]!;
        if (entries.Length == 0)
        {
            return new HistoryResult(position, []);
        }
        // Entries come newest first from XREVRANGE; the answer is newest first only for a backward read.
        var reverse = ((long)parts[3] == 1) != backward;
        var publications = new Publication[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            publications[reverse ? entries.Length - 1 - i : i] = PublicationMessage.FromStreamEntry(entries[i]);
        }
        // Forward, newer publications are held whenever the last one returned is (trimming drops the oldest first).
        var more = backward ? (long)parts[4] == 1 : publications[^1].Offset < position.Offset;
        return new HistoryResult(position, publications) { More = more };
    }

    /// <inheritdoc/>
    public async ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var multiplexer = await _connection.GetAsync(cancellationToken);
        // The head before subscribing is where delivery starts: a publication made between this read and the
        // subscription reaches the node from history, so none is missed at the seam.
        var head = await RedisErrors.GuardAsync(multiplexer.GetDatabase().HashGetAsync(_keys.Meta(channel), HeadFields), cancellationToken);
        // SubscribeAsync completes when Redis has confirmed the subscription: from then on every PUBLISH reaches us.
        var name = _keys.PubSub(channel);
        var pubSub = IsSharded(multiplexer) ? RedisChannel.Sharded(name) : RedisChannel.Literal(name);
        var queue = await RedisErrors.GuardAsync(multiplexer.GetSubscriber().SubscribeAsync(pubSub), cancellationToken);
        var state = new ChannelState(channel, queue, ToPosition(head));
        if (_subscriptions.TryGetValue(channel, out var previous))
        {
            previous.Active = false;
        }
        _subscriptions[channel] = state;
        // One message at a time per channel, in the order Redis sent them (OnMessage(Func<,Task>) awaits each before
        // reading the next), and never at the same time as a position check of the channel (the channel's gate).
        queue.OnMessage(message => OnMessageAsync(state, message));
    }

    /// <inheritdoc/>
    public async ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        if (!_subscriptions.TryRemove(channel, out var state))
        {
            return;
        }
        // Messages already queued are dropped too: the node asked for none from now on.
        state.Active = false;
        await RedisErrors.GuardAsync(state.Queue.UnsubscribeAsync(), cancellationToken);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _handler = null;
        await StopCheckingAsync();
        if (_control is { } control)
        {
            try
            {
                await control.UnsubscribeAsync();
            }
            catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
            {
                // Redis is gone: it has already forgotten the subscription.
            }
        }
        foreach (var (channel, _) in _subscriptions)
        {
            if (_subscriptions.TryRemove(channel, out var state))
            {
                state.Active = false;
                try
                {
                    await state.Queue.UnsubscribeAsync();
                }
                catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
                {
                    // Redis is gone: it has already forgotten the subscription.
                }
            }
        }
    }

    /// <summary>Whether this broker uses sharded Pub/Sub (for tests).</summary>
    internal bool UsesShardedPubSub => Volatile.Read(ref _pubSubMode) == PubSubSharded;

    /// <summary>
    /// Whether Redis is a Cluster, so Pub/Sub is sharded. Decided once, the first time the connection is up, so every
    /// publication and subscription of this broker uses the same kind. While it has never been up, classic: nothing
    /// reaches Redis then anyway.
    /// </summary>
    private bool IsSharded(IConnectionMultiplexer multiplexer)
    {
        var mode = Volatile.Read(ref _pubSubMode);
        if (mode == PubSubUndecided && multiplexer.IsConnected)
        {
            var cluster = multiplexer.GetServers().Any(s => s.ServerType == ServerType.Cluster);
            Interlocked.CompareExchange(ref _pubSubMode, cluster ? PubSubSharded : PubSubClassic, PubSubUndecided);
            mode = Volatile.Read(ref _pubSubMode);
        }
        return mode == PubSubSharded;
    }

    private static string NewEpoch() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
}
