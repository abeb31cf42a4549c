using System.Collections.Concurrent;
using Herald.Brokers;
using Herald.Diagnostics;
using Herald.Polling;
using Herald.Presence;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald;

/// <summary>
/// One Herald node: routes publications from the broker to the subscriptions of this process's connections,
/// and answers publish, history and presence for every transport. Transports own sockets and requests; the node
/// owns channels and subscriptions; the broker owns logs.
/// </summary>
public sealed partial class HeraldNode : IBrokerEventHandler, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, ChannelSubscribers> _channels = new(StringComparer.Ordinal);
    private readonly NodePresence _presence;
    private readonly ILogger _logger;
    private int _clientIds;

    /// <summary>Creates a node over a broker. Call <see cref="StartAsync"/> before use.</summary>
    public HeraldNode(HeraldOptions options, IBroker broker, IConnectAuthenticator? authenticator = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Broker = broker ?? throw new ArgumentNullException(nameof(broker));
        Authenticator = authenticator ?? new AnonymousOnlyAuthenticator(options);
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        TimeProvider = timeProvider ?? TimeProvider.System;
        _logger = LoggerFactory.CreateLogger<HeraldNode>();
        NodeId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));
        _presence = new NodePresence(options, TimeProvider);
    }

    /// <summary>The settings in force.</summary>
    public HeraldOptions Options { get; }

    /// <summary>The broker holding logs and fanning out across nodes.</summary>
    public IBroker Broker { get; }

    /// <summary>Decides who may connect.</summary>
    public IConnectAuthenticator Authenticator { get; }

    private readonly CancellationTokenSource _stopping = new();

    /// <summary>Cancelled when the node begins to shut down: connections close with 1001 and parked polls answer.</summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>Starts an orderly shutdown: every connection is asked to close (1001) and every parked poll answers now.</summary>
    public void BeginShutdown()
    {
        if (!_stopping.IsCancellationRequested)
        {
            _stopping.Cancel();
            PollWaiters.WakeAll();
        }
    }

    /// <summary>Long polls parked on this node.</summary>
    public PollWaiters PollWaiters { get; } = new();

    /// <summary>Counters of this node.</summary>
    public HeraldMetrics Metrics { get; } = new();

    /// <summary>Logger factory for sessions and transports.</summary>
    public ILoggerFactory LoggerFactory { get; }

    /// <summary>The clock.</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>A short random id of this node, the prefix of its client ids.</summary>
    public string NodeId { get; }

    /// <summary>Channels with at least one subscriber on this node.</summary>
    public int ActiveChannels => _channels.Count;

    /// <summary>Starts the broker and begins receiving publications.</summary>
    public ValueTask StartAsync(CancellationToken cancellationToken = default) => Broker.StartAsync(this, cancellationToken);

    /// <summary>A new unique client id.</summary>
    public string NewClientId() => $"{NodeId}-{Interlocked.Increment(ref _clientIds):x}";

    /// <summary>Publishes compact UTF-8 JSON <paramref name="data"/> to a channel whose name was validated.</summary>
    public async ValueTask<StreamPosition> PublishAsync(string channel, NamespaceOptions ns, ReadOnlyMemory<byte> data, ClientInfo? info, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ns);
        var position = await Broker.PublishAsync(channel, data, info, PolicyOf(ns), cancellationToken);
        Metrics.Published();
        return position;
    }

    /// <summary>Reads a channel's history (see <see cref="IBroker.ReadHistoryAsync"/>).</summary>
    public ValueTask<HistoryResult> ReadHistoryAsync(string channel, NamespaceOptions ns, ulong? afterOffset, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ns);
        return Broker.ReadHistoryAsync(channel, afterOffset, limit, PolicyOf(ns), cancellationToken);
    }

    /// <summary>The channel's head, when the broker can tell it at once (see <see cref="IBroker.TryPeekHead"/>).</summary>
    public bool TryPeekHead(string channel, out StreamPosition head) => Broker.TryPeekHead(channel, out head);

    /// <summary>
    /// Works out what a client resuming from <paramref name="since"/> missed: the publications after it, when the
    /// history window still holds all of them in the same epoch, else <c>recovered:false</c>.
    /// </summary>
    public async ValueTask<RecoveryResult> RecoverAsync(string channel, NamespaceOptions ns, StreamPosition? since, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ns);
        if (since is not { } from)
        {
            var head = await ReadHistoryAsync(channel, ns, null, 0, cancellationToken);
            return new RecoveryResult(head.Position, Recovered: null, []);
        }
        var history = await ReadHistoryAsync(channel, ns, from.Offset, int.MaxValue, cancellationToken);
        var position = history.Position;
        if (from.Epoch != position.Epoch)
        {
            return new RecoveryResult(position, Recovered: false, []);
        }
        if (from.Offset > position.Offset)
        {
            return new RecoveryResult(position, Recovered: null, [], InvalidPosition: true);
        }
        var missed = position.Offset - from.Offset;
        var complete = (ulong)history.Publications.Count == missed
            && (missed == 0 || history.Publications[0].Offset == from.Offset + 1);
        return complete
            ? new RecoveryResult(position, Recovered: true, history.Publications)
            : new RecoveryResult(position, Recovered: false, []);
    }

    /// <summary>
    /// The clients present in a channel on this node: its WebSocket subscribers and the polling clients whose lease has
    /// not expired, one entry per client id.
    /// </summary>
    public IReadOnlyCollection<ClientInfo> GetPresence(string channel) => _presence.Get(channel);

    /// <summary>
    /// Records that a polling client (its own <paramref name="client"/> id) polled <paramref name="channel"/>: it is
    /// present until <paramref name="wait"/> plus <see cref="HeraldOptions.PollPresenceTimeout"/> from now, unless it
    /// polls again. Call it only for namespaces with <see cref="NamespaceOptions.Presence"/> on.
    /// </summary>
    /// <param name="channel">A valid channel name.</param>
    /// <param name="client">The client's id, checked with <see cref="ClientInfoRules.IsValidClientId"/>.</param>
    /// <param name="user">The authenticated user; empty for anonymous clients.</param>
    /// <param name="info">The display info to show (see <see cref="ClientInfoRules.Effective"/>), or <see langword="null"/>.</param>
    /// <param name="wait">How long this poll may be held.</param>
    /// <returns>
    /// Whether the client is listed: <see langword="false"/> when the channel already holds
    /// <see cref="HeraldOptions.MaxPollPresencePerChannel"/> leases, or another user's live lease has that id.
    /// </returns>
    /// <remarks>Refreshing an unchanged lease takes no lock and allocates nothing.</remarks>
    public bool TouchPollPresence(string channel, string client, string user, System.Text.Json.JsonElement? info, TimeSpan wait)
    {
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(user);
        return _presence.TouchLease(channel, client, user, info, wait);
    }

    /// <summary>Removes expired poll leases in every channel now (a timer does it periodically anyway).</summary>
    public void SweepPollPresence() => _presence.SweepAll();

    /// <summary>Poll leases held on this node, expired ones not yet swept included.</summary>
    public int PollPresenceLeases => _presence.PollLeaseCount;

    internal void AddPresence(string channel, ClientInfo client) => _presence.AddSubscriber(channel, client);

    /// <summary>
    /// Ends the poll lease of (<paramref name="channel"/>, <paramref name="client"/>) when <paramref name="user"/> holds
    /// it: that client now has a WebSocket subscription there, listed under the connection's id.
    /// </summary>
    internal void EndPollPresence(string channel, string client, string user) => _presence.EndLease(channel, client, user);

    internal void RemovePresence(string channel, ClientInfo client) => _presence.RemoveSubscriber(channel, client);

    internal async ValueTask AddSubscriptionAsync(Subscription subscription, CancellationToken cancellationToken)
    {
        while (true)
        {
            var subscribers = _channels.GetOrAdd(subscription.Channel, static _ => new ChannelSubscribers());
            await subscribers.Gate.WaitAsync(cancellationToken);
            try
            {
                if (subscribers.Removed)
                {
                    continue; // lost a race with the last unsubscribe; take the fresh entry
                }
                if (subscribers.Add(subscription) == 1)
                {
                    await Broker.SubscribeAsync(subscription.Channel, cancellationToken);
                }
                return;
            }
            finally
            {
                subscribers.Gate.Release();
            }
        }
    }

    internal async ValueTask RemoveSubscriptionAsync(Subscription subscription)
    {
        if (!_channels.TryGetValue(subscription.Channel, out var subscribers))
        {
            return;
        }
        await subscribers.Gate.WaitAsync();
        try
        {
            if (subscribers.Remove(subscription) == 0 && !subscribers.Removed)
            {
                subscribers.Removed = true;
                _channels.TryRemove(new KeyValuePair<string, ChannelSubscribers>(subscription.Channel, subscribers));
                try
                {
                    await Broker.UnsubscribeAsync(subscription.Channel);
                }
                catch (Exception ex)
                {
                    Log.BrokerUnsubscribeFailed(_logger, subscription.Channel, ex);
                }
            }
        }
        finally
        {
            subscribers.Gate.Release();
        }
    }

    /// <inheritdoc/>
    /// <remarks>The fan-out: the push frame is encoded once and the same bytes are queued to every subscriber.</remarks>
    public void HandlePublication(string channel, Publication publication, string epoch)
    {
        PollWaiters.Wake(channel);
        if (!_channels.TryGetValue(channel, out var subscribers))
        {
            return;
        }
        var all = subscribers.Snapshot;
        if (all.Length == 0)
        {
            return;
        }
        var push = ProtocolWriter.EncodePush(channel, publication);
        var delivered = 0;
        foreach (var subscription in all)
        {
            if (subscription.Deliver(publication, epoch, push))
            {
                delivered++;
            }
        }
        Metrics.Delivered(delivered);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        BeginShutdown();
        await Broker.DisposeAsync();
        _presence.Dispose();
        Metrics.Dispose();
        _stopping.Dispose();
    }

    private static HistoryPolicy PolicyOf(NamespaceOptions ns) => new(ns.HistorySize, ns.HistoryTtl);

    private sealed class ChannelSubscribers
    {
        private Subscription[] _subscribers = [];

        public SemaphoreSlim Gate { get; } = new(1, 1);

        public bool Removed { get; set; }

        public Subscription[] Snapshot => Volatile.Read(ref _subscribers);

        // Copy-on-write: fan-out reads a snapshot without locking; changes are rare next to publications.
        public int Add(Subscription subscription)
        {
            var next = new Subscription[_subscribers.Length + 1];
            _subscribers.CopyTo(next, 0);
            next[^1] = subscription;
            Volatile.Write(ref _subscribers, next);
            return next.Length;
        }

        public int Remove(Subscription subscription)
        {
            var index = Array.IndexOf(_subscribers, subscription);
            if (index >= 0)
            {
                var next = new Subscription[_subscribers.Length - 1];
                Array.Copy(_subscribers, 0, next, 0, index);
                Array.Copy(_subscribers, index + 1, next, index, next.Length - index);
                Volatile.Write(ref _subscribers, next);
            }
            return _subscribers.Length;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "Broker unsubscribe from {Channel} failed")]
        public static partial void BrokerUnsubscribeFailed(ILogger logger, string channel, Exception exception);
    }
}

/// <summary>The outcome of a recovery attempt.</summary>
/// <param name="Position">The channel's current head.</param>
/// <param name="Recovered"><see langword="true"/> when every missed publication is returned; <see langword="null"/> when no position was given.</param>
/// <param name="Publications">The missed publications, oldest first.</param>
/// <param name="InvalidPosition">The given offset is beyond the head of the current epoch.</param>
public sealed record RecoveryResult(StreamPosition Position, bool? Recovered, IReadOnlyList<Publication> Publications, bool InvalidPosition = false);
