using System.Collections.Concurrent;
using Herald.Brokers;
using Herald.Channels;
using Herald.Diagnostics;
using Herald.Presence;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald;

/// <summary>
/// One Herald node: receives publications from the broker for the channels its clients are interested in (WebSocket
/// subscribers and parked long polls) and fans them out to this process's connections. Transports own sockets and
/// requests; the node owns channels, subscriptions and interest; the broker owns logs; the channel rules live in the
/// node's channel service.
/// </summary>
public sealed partial class HeraldNode : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, ChannelEntry> _channels = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILogger _logger;
    private readonly bool _ownsPresence;
    private ITimer? _heartbeat;
    private ITimer? _lingerSweeper;
    private int _clientIds;
    private int _parked;
    private int _sweeping;

    /// <summary>Creates a node over a broker. Call <see cref="StartAsync"/> before use.</summary>
    /// <param name="options">The settings.</param>
    /// <param name="broker">The broker; one instance per node.</param>
    /// <param name="authenticator">Decides who may connect; anonymous-only (as <see cref="HeraldOptions.AllowAnonymous"/> says) when <see langword="null"/>.</param>
    /// <param name="loggerFactory">Logging.</param>
    /// <param name="timeProvider">The clock.</param>
    /// <param name="presence">Where presence is kept; an in-memory store of this node's own when <see langword="null"/>.</param>
    public HeraldNode(HeraldOptions options, IBroker broker, IConnectAuthenticator? authenticator = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null, IPresenceStore? presence = null)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Broker = broker ?? throw new ArgumentNullException(nameof(broker));
        Authenticator = authenticator ?? new AnonymousOnlyAuthenticator(options);
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        TimeProvider = timeProvider ?? TimeProvider.System;
        _logger = LoggerFactory.CreateLogger<HeraldNode>();
        NodeId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));
        _ownsPresence = presence is null;
        Presence = presence ?? new MemoryPresenceStore(options, TimeProvider);
        Metrics = new HeraldMetrics(() => DispatchBacklog);
        Channels = new ChannelService(options, broker, Presence, Metrics, NodeId, WaitForFanOutRoomAsync);
        Server = new HeraldServer(this);
    }

    /// <summary>The settings in force.</summary>
    public HeraldOptions Options { get; }

    /// <summary>The broker holding logs and fanning out across nodes.</summary>
    internal IBroker Broker { get; }

    /// <summary>Where presence is kept.</summary>
    internal IPresenceStore Presence { get; }

    /// <summary>Decides who may connect.</summary>
    internal IConnectAuthenticator Authenticator { get; }

    /// <summary>Counters of this node.</summary>
    internal HeraldMetrics Metrics { get; }

    /// <summary>Logger factory for sessions and transports.</summary>
    internal ILoggerFactory LoggerFactory { get; }

    /// <summary>The sessions' logger, made once: <c>CreateLogger</c> makes a new wrapper per call, and sessions are many.</summary>
    internal ILogger SessionLogger => _sessionLogger ??= LoggerFactory.CreateLogger<Sessions.ClientSession>();

    private ILogger? _sessionLogger;

    /// <summary>The clock.</summary>
    internal TimeProvider TimeProvider { get; }

    /// <summary>A short random id of this node, the prefix of its client ids.</summary>
    public string NodeId { get; }

    /// <summary>Channels this node receives from the broker: those with subscribers or parked polls, and those lingering after their last poll.</summary>
    internal int ActiveChannels => _channels.Count;

    /// <summary>This node's WebSocket and SSE subscribers of <paramref name="channel"/> (for tests and diagnostics).</summary>
    internal Subscription[] SubscribersOf(string channel) =>
        _channels.TryGetValue(channel, out var entry) ? [.. entry.Subscribers.TakeWhile(s => s is not null).Select(s => s!)] : [];

    /// <summary>Long polls parked on this node right now.</summary>
    internal int ParkedPolls => Volatile.Read(ref _parked);

    /// <summary>Cancelled when the node begins to shut down: connections close with 1001 and parked polls answer.</summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>The channel rules: names, permissions, publish, history, recovery and presence.</summary>
    internal ChannelService Channels { get; }

    /// <summary>
    /// The in-process server API of this node: publish, history, presence, and commands about a user's connections on
    /// every node. The same service <c>AddHerald()</c> registers as <see cref="IHeraldServer"/>, and the one <c>/api/*</c> calls.
    /// </summary>
    public IHeraldServer Server { get; }

    /// <summary>The application's handlers (none unless the host registered some).</summary>
    internal Handlers.HandlerPipeline Handlers { get; init; } = Herald.Handlers.HandlerPipeline.Empty;

    /// <summary>Starts the broker, begins receiving publications, and keeps this node's presence entries alive.</summary>
    public async ValueTask StartAsync(CancellationToken cancellationToken = default)
    {
        await Broker.StartAsync(new BrokerEvents(this), cancellationToken);
        var heartbeat = Options.PresenceNodeTimeout / 3;
        await RefreshPresenceAsync();
        _heartbeat ??= TimeProvider.CreateTimer(static state => _ = ((HeraldNode)state!).RefreshPresenceAsync(), this, heartbeat, heartbeat);
        var sweep = TimeSpan.FromTicks(Math.Clamp(Options.PollInterestLinger.Ticks / 2, TimeSpan.TicksPerSecond, 10 * TimeSpan.TicksPerSecond));
        _lingerSweeper ??= TimeProvider.CreateTimer(static state => _ = ((HeraldNode)state!).RetireIdleChannelsAsync(), this, sweep, sweep);
    }

    /// <summary>Starts an orderly shutdown: every connection is asked to close (1001) and every parked poll answers now.</summary>
    public void BeginShutdown()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }
        _stopping.Cancel();
        foreach (var (_, entry) in _channels)
        {
            entry.FanOut.Stop();
            entry.WakePolls();
        }
    }

    /// <summary>A new unique client id.</summary>
    internal string NewClientId() => $"{NodeId}-{Interlocked.Increment(ref _clientIds):x}";

    /// <summary>
    /// The head of <paramref name="channel"/> as the publications passing through this node tell it, for a channel the
    /// node receives from the broker; <see langword="false"/> when it does not know it. Never ahead of the broker.
    /// </summary>
    internal bool TryGetKnownHead(string channel, out StreamPosition head)
    {
        if (_channels.TryGetValue(channel, out var entry) && entry.TryGetHead(out head))
        {
            return true;
        }
        head = default;
        return false;
    }

    /// <summary>
    /// Parks a long poll on <paramref name="channels"/>: the node receives their publications from the broker (subscribing
    /// if it did not yet), and the returned interest's <see cref="PollInterest.Woken"/> completes at the next publication
    /// of any of them. Read positions only after this returns, so a publication in between is not missed.
    /// </summary>
    /// <exception cref="BrokerUnavailableException">The broker cannot subscribe.</exception>
    internal async ValueTask<PollInterest> ParkAsync(IReadOnlyList<string> channels, CancellationToken cancellationToken)
    {
        var interest = new PollInterest(this, channels.Count);
        Interlocked.Increment(ref _parked);
        try
        {
            foreach (var channel in channels)
            {
                var entry = await AcquireAsync(channel, interest, static (e, i) => e.AddPoll(i.Signal), cancellationToken);
                interest.Add(channel, entry);
            }
        }
        catch
        {
            interest.Dispose();
            throw;
        }
        if (_stopping.IsCancellationRequested)
        {
            interest.Signal.TrySetResult(); // parked during shutdown: answer at once
        }
        return interest;
    }

    internal async ValueTask AddSubscriptionAsync(Subscription subscription, CancellationToken cancellationToken) =>
        await AcquireAsync(subscription.Channel, subscription, static (e, s) => e.AddSubscriber(s), cancellationToken);

    internal async ValueTask RemoveSubscriptionAsync(Subscription subscription)
    {
        if (!_channels.TryGetValue(subscription.Channel, out var entry))
        {
            return;
        }
        bool retire;
        lock (entry.Sync)
        {
            entry.RemoveSubscriber(subscription);
            retire = entry.IsIdle && TimeProvider.GetTimestamp() >= entry.LingerUntil;
        }
        if (retire)
        {
            await RetireAsync(subscription.Channel, entry);
        }
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        BeginShutdown();
        _heartbeat?.Dispose();
        _lingerSweeper?.Dispose();
        await Broker.DisposeAsync();
        if (_ownsPresence)
        {
            await Presence.DisposeAsync();
        }
        Metrics.Dispose();
        _stopping.Dispose();
    }

    /// <summary>
    /// Registers interest in a channel (a subscriber or a parked poll) and makes sure the node receives the channel from
    /// the broker before returning. The common case, a channel already received, takes one short lock.
    /// </summary>
    private async Task<ChannelEntry> AcquireAsync<TState>(string channel, TState state, Action<ChannelEntry, TState> register, CancellationToken cancellationToken)
    {
        while (true)
        {
            var entry = _channels.GetOrAdd(channel, static (name, node) => new ChannelEntry(node, name), this);
            lock (entry.Sync)
            {
                if (entry.Removed)
                {
                    continue; // lost a race with the retirement of an idle channel; take the fresh entry
                }
                if (entry.Active && !entry.Retiring)
                {
                    register(entry, state);
                    return entry;
                }
            }
            // Subscribing and unsubscribing a channel at the broker are serialised by the entry's gate, and a retired
            // entry is removed only after its unsubscribe finished, so a fresh entry never subscribes before it.
            await entry.Gate.WaitAsync(cancellationToken);
            try
            {
                lock (entry.Sync)
                {
                    if (entry.Removed)
                    {
                        continue;
                    }
                }
                if (!entry.Active)
                {
                    await Broker.SubscribeAsync(channel, cancellationToken);
                    lock (entry.Sync)
                    {
                        entry.Active = true;
                    }
                }
                lock (entry.Sync)
                {
                    register(entry, state);
                }
                return entry;
            }
            finally
            {
                entry.Gate.Release();
            }
        }
    }

    /// <summary>Unsubscribes an idle channel from the broker and forgets it, unless interest came back meanwhile.</summary>
    private async Task RetireAsync(string channel, ChannelEntry entry)
    {
        await entry.Gate.WaitAsync();
        try
        {
            lock (entry.Sync)
            {
                if (entry.Removed || !entry.IsIdle || TimeProvider.GetTimestamp() < entry.LingerUntil)
                {
                    return;
                }
                entry.Retiring = true; // from here nobody registers without the gate
            }
            if (entry.Active)
            {
                try
                {
                    await Broker.UnsubscribeAsync(channel);
                }
                catch (Exception ex)
                {
                    Log.BrokerUnsubscribeFailed(_logger, channel, ex);
                }
            }
            lock (entry.Sync)
            {
                entry.Active = false;
                entry.Removed = true;
            }
            _channels.TryRemove(new KeyValuePair<string, ChannelEntry>(channel, entry));
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    /// <summary>The periodic sweep: retires channels whose last poll ended longer than <see cref="HeraldOptions.PollInterestLinger"/> ago.</summary>
    private async Task RetireIdleChannelsAsync()
    {
        if (Interlocked.Exchange(ref _sweeping, 1) == 1)
        {
            return;
        }
        try
        {
            var now = TimeProvider.GetTimestamp();
            foreach (var (channel, entry) in _channels)
            {
                if (entry.IsIdle && now >= entry.LingerUntil)
                {
                    await RetireAsync(channel, entry);
                }
            }
        }
        catch (Exception ex)
        {
            Log.SweepFailed(_logger, ex);
        }
        finally
        {
            Volatile.Write(ref _sweeping, 0);
        }
    }

    private async Task RefreshPresenceAsync()
    {
        try
        {
            await Presence.RefreshNodeAsync(NodeId, Options.PresenceNodeTimeout);
        }
        catch (Exception ex)
        {
            Log.PresenceRefreshFailed(_logger, NodeId, ex);
        }
    }

    private void ReleasePoll(ChannelEntry entry, TaskCompletionSource signal)
    {
        var lingerUntil = TimeProvider.GetTimestamp() + (long)(Options.PollInterestLinger.TotalSeconds * TimeProvider.TimestampFrequency);
        lock (entry.Sync)
        {
            entry.RemovePoll(signal, lingerUntil);
        }
    }

    private void PollEnded() => Interlocked.Decrement(ref _parked);

    /// <summary>
    /// What the broker calls with publications. A separate object rather than the node itself, so that the node's
    /// public type does not offer anyone else a way to inject publications into its fan-out.
    /// </summary>
    private sealed class BrokerEvents(HeraldNode node) : IBrokerEventHandler
    {
        public void HandlePublication(string channel, Publication publication, string epoch) => node.HandlePublication(channel, publication, epoch);

        public void HandleControl(ReadOnlyMemory<byte> message) => node.HandleControl(message);
    }

    /// <summary>
    /// A long poll's interest in its channels: while it is held, the node receives them from the broker, and
    /// <see cref="Woken"/> completes at the next publication of any. Dispose it when the poll ends, however it ends.
    /// </summary>
    internal sealed class PollInterest : IDisposable
    {
        private readonly HeraldNode _node;
        private readonly List<(string Channel, ChannelEntry Entry)> _entries;
        private int _disposed;

        internal PollInterest(HeraldNode node, int channels)
        {
            _node = node;
            _entries = new(channels);
        }

        internal TaskCompletionSource Signal { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when a publication arrives in one of the channels (or the node shuts down).</summary>
        public Task Woken => Signal.Task;

        /// <summary>
        /// Tells the node a head read by this poll after it parked, when the node knows none yet: publications reach
        /// the node from the moment the poll parked, so that head stays current.
        /// </summary>
        public void NoteHead(string channel, StreamPosition head)
        {
            foreach (var (name, entry) in _entries)
            {
                if (name == channel)
                {
                    entry.SeedHead(head);
                    return;
                }
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1)
            {
                return;
            }
            foreach (var (_, entry) in _entries)
            {
                _node.ReleasePoll(entry, Signal);
            }
            _node.PollEnded();
        }

        internal void Add(string channel, ChannelEntry entry) => _entries.Add((channel, entry));
    }

    /// <summary>What the node holds for one channel it receives: its subscribers, its parked polls and its known head.</summary>
    internal sealed class ChannelEntry
    {
        public ChannelEntry(HeraldNode node, string channel) => FanOut = new FanOutQueue(node, this, channel);

        private Subscription?[] _subscribers = [];
        private int _subscriberCount;
        private HashSet<TaskCompletionSource>? _waiters;
        private int _polls;
        private KnownHead? _head;
        private volatile bool _active;
        private volatile bool _retiring;

        /// <summary>The channel's publications waiting for fan-out, and their worker.</summary>
        public FanOutQueue FanOut { get; }

        /// <summary>Serialises the broker subscribe and unsubscribe of this channel.</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);

        /// <summary>Guards the registrations and the flags below.</summary>
        public Lock Sync { get; } = new();

        /// <summary>The broker subscription is active: every publication from now on reaches this entry.</summary>
        public bool Active { get => _active; set => _active = value; }

        /// <summary>The entry is being unsubscribed; registrations wait for the gate and then take a fresh entry.</summary>
        public bool Retiring { get => _retiring; set => _retiring = value; }

        /// <summary>The entry left the table; whoever still holds it takes a fresh one.</summary>
        public bool Removed { get; set; }

        /// <summary>The <see cref="TimeProvider.GetTimestamp"/> before which an idle entry is kept (the poll linger).</summary>
        public long LingerUntil { get; private set; }

        /// <summary>The subscribers, in an array that may have spare capacity at its end: read up to the first null.</summary>
        public Subscription?[] Subscribers => Volatile.Read(ref _subscribers);

        public bool IsIdle => Volatile.Read(ref _subscriberCount) == 0 && Volatile.Read(ref _polls) == 0;

        // Fan-out reads the array without locking (changes are made under Sync). An add writes into the spare capacity
        // in place: a reader either sees the new subscriber or stops at the null before it, both of which are a
        // snapshot. The array doubles when full, so N subscribers cost O(N) copying; one copy per add (as before) cost
        // O(N²), which for a channel of 18,000 subscribers left over 100 MB of large-object garbage behind.
        public void AddSubscriber(Subscription subscription)
        {
            var current = _subscribers;
            if (_subscriberCount == current.Length)
            {
                var grown = new Subscription?[Math.Max(4, current.Length * 2)];
                current.AsSpan().CopyTo(grown);
                grown[_subscriberCount] = subscription;
                Volatile.Write(ref _subscribers, grown);
            }
            else
            {
                Volatile.Write(ref current[_subscriberCount], subscription);
            }
            Volatile.Write(ref _subscriberCount, _subscriberCount + 1);
        }

        // A removal copies (readers may be walking the current array, and moving an entry could make one skip a
        // subscriber), into a smaller array when the list has shrunk to a quarter of its capacity.
        public void RemoveSubscriber(Subscription subscription)
        {
            var current = _subscribers;
            var index = Array.IndexOf(current, subscription, 0, _subscriberCount);
            if (index < 0)
            {
                return;
            }
            var count = _subscriberCount - 1;
            var capacity = count == 0 ? 0 : count <= current.Length / 4 ? current.Length / 2 : current.Length;
            var copy = capacity == 0 ? [] : new Subscription?[capacity];
            current.AsSpan(0, index).CopyTo(copy);
            current.AsSpan(index + 1, count - index).CopyTo(copy.AsSpan(index));
            Volatile.Write(ref _subscribers, copy);
            Volatile.Write(ref _subscriberCount, count);
        }

        public void AddPoll(TaskCompletionSource signal)
        {
            (_waiters ??= []).Add(signal);
            Volatile.Write(ref _polls, _polls + 1);
        }

        public void RemovePoll(TaskCompletionSource signal, long lingerUntil)
        {
            _waiters?.Remove(signal);
            Volatile.Write(ref _polls, _polls - 1);
            LingerUntil = Math.Max(LingerUntil, lingerUntil);
        }

        /// <summary>Completes every poll parked here; they re-park if they find nothing new.</summary>
        public void WakePolls()
        {
            HashSet<TaskCompletionSource>? woken;
            lock (Sync)
            {
                woken = _waiters;
                _waiters = null;
            }
            if (woken is null)
            {
                return;
            }
            foreach (var signal in woken)
            {
                signal.TrySetResult();
            }
        }

        /// <summary>Called at the broker's hand-off of each publication, one at a time, in offset order.</summary>
        public void NotePublished(ulong offset, string epoch)
        {
            var known = Volatile.Read(ref _head);
            if (known is null || offset > known.Offset || known.Epoch != epoch)
            {
                Volatile.Write(ref _head, new KnownHead(offset, epoch));
            }
        }

        /// <summary>Sets the head from a read made while active, unless a publication already told it.</summary>
        public void SeedHead(StreamPosition head) => Interlocked.CompareExchange(ref _head, new KnownHead(head.Offset, head.Epoch), null);

        public bool TryGetHead(out StreamPosition head)
        {
            if (_active && !_retiring && Volatile.Read(ref _head) is { } known)
            {
                head = new StreamPosition(known.Offset, known.Epoch);
                return true;
            }
            head = default;
            return false;
        }

        private sealed record KnownHead(ulong Offset, string Epoch);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "Broker unsubscribe from {Channel} failed")]
        public static partial void BrokerUnsubscribeFailed(ILogger logger, string channel, Exception exception);

        [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Presence refresh of node {NodeId} failed")]
        public static partial void PresenceRefreshFailed(ILogger logger, string nodeId, Exception exception);

        [LoggerMessage(EventId = 102, Level = LogLevel.Error, Message = "Retiring idle channels failed")]
        public static partial void SweepFailed(ILogger logger, Exception exception);
    }
}
