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
/// <para>A channel's epoch is random, made when its log is: by its first publication, or by a read before it (then it
/// expires after a day unless something is published). It goes with the head: losing them (Redis restarted without
/// persistence, the key evicted) starts a new epoch, which clients see as <c>recovered:false</c>.</para>
/// <para>Redis failures that mean it cannot be reached (connection, timeout, loading, read-only replica) are thrown as
/// <see cref="BrokerUnavailableException"/>; StackExchange.Redis's timeouts bound how long a call waits.</para>
/// </remarks>
public sealed class RedisBroker : IBroker
{
    /// <summary>How long an epoch made by a read lives without a publication.</summary>
    internal static readonly TimeSpan UnpublishedEpochLifetime = TimeSpan.FromDays(1);

    private readonly RedisConnection _connection;
    private readonly RedisKeys _keys;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);
    private IBrokerEventHandler? _handler;
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
        _keys = new RedisKeys(options.Prefix);
        _logger = logger ?? NullLogger.Instance;
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
    }

    /// <inheritdoc/>
    public async ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        _ = _handler ?? throw new InvalidOperationException("Start the broker before publishing.");
        var database = (await _connection.GetAsync(cancellationToken)).GetDatabase();
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
        ];
        var result = await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(RedisScripts.Publish, [_keys.Meta(channel), _keys.Stream(channel)], args), cancellationToken);
        var parts = (RedisResult[])result!;
        return new StreamPosition((ulong)parts[0], (string)parts[1]!);
    }

    /// <inheritdoc/>
    public async ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var database = (await _connection.GetAsync(cancellationToken)).GetDatabase();
        RedisValue[] args =
        [
            afterOffset is { } after ? after.ToString(CultureInfo.InvariantCulture) : "",
            Math.Max(0, limit),
            history.Ttl > TimeSpan.Zero ? (long)history.Ttl.TotalMilliseconds : 0,
            NewEpoch(),
            (long)UnpublishedEpochLifetime.TotalMilliseconds,
        ];
        var result = await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(RedisScripts.Read, [_keys.Meta(channel), _keys.Stream(channel)], args), cancellationToken);
        var parts = (RedisResult[])result!;
        var position = new StreamPosition((ulong)parts[0], (string)parts[1]!);
        var entries = (RedisResult[])parts[2]!;
        if (entries.Length == 0)
        {
            return new HistoryResult(position, []);
        }
        var newestFirst = (long)parts[3] == 1;
        var publications = new Publication[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            publications[newestFirst ? entries.Length - 1 - i : i] = PublicationMessage.FromStreamEntry(entries[i]);
        }
        return new HistoryResult(position, publications);
    }

    /// <inheritdoc/>
    public async ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var subscriber = (await _connection.GetAsync(cancellationToken)).GetSubscriber();
        // SubscribeAsync completes when Redis has confirmed the subscription: from then on every PUBLISH reaches us.
        var queue = await RedisErrors.GuardAsync(subscriber.SubscribeAsync(RedisChannel.Literal(_keys.PubSub(channel))), cancellationToken);
        var subscription = new Subscription(queue);
        if (_subscriptions.TryGetValue(channel, out var previous))
        {
            previous.Active = false;
        }
        _subscriptions[channel] = subscription;
        // One message at a time per channel, in the order Redis sent them (OnMessage(Action) reads the queue sequentially).
        queue.OnMessage(message => Deliver(channel, subscription, message));
    }

    /// <inheritdoc/>
    public async ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        if (!_subscriptions.TryRemove(channel, out var subscription))
        {
            return;
        }
        // Messages already queued are dropped too: the node asked for none from now on.
        subscription.Active = false;
        await RedisErrors.GuardAsync(subscription.Queue.UnsubscribeAsync(), cancellationToken);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _handler = null;
        foreach (var (channel, _) in _subscriptions)
        {
            if (_subscriptions.TryRemove(channel, out var subscription))
            {
                subscription.Active = false;
                try
                {
                    await subscription.Queue.UnsubscribeAsync();
                }
                catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
                {
                    // Redis is gone: it has already forgotten the subscription.
                }
            }
        }
    }

    private void Deliver(string channel, Subscription subscription, ChannelMessage message)
    {
        if (!subscription.Active || _handler is not { } handler)
        {
            return;
        }
        var payload = (byte[]?)message.Message;
        if (payload is null || !PublicationMessage.TryParse(payload, out var publication, out var epoch))
        {
            RedisLog.MalformedMessage(_logger, channel);
            return;
        }
        try
        {
            handler.HandlePublication(channel, publication!, epoch!);
        }
        catch (Exception ex)
        {
            // The handler must not throw; if it does, the channel's queue must still go on to the next publication.
            RedisLog.HandlerFailed(_logger, channel, publication!.Offset, ex);
        }
    }

    private static string NewEpoch() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));

    private sealed class Subscription(ChannelMessageQueue queue)
    {
        public ChannelMessageQueue Queue { get; } = queue;

        public volatile bool Active = true;
    }
}
