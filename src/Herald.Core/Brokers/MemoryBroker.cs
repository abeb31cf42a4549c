using System.Collections.Concurrent;
using System.Security.Cryptography;
using Herald.Protocol;

namespace Herald.Brokers;

/// <summary>
/// The logs of the embedded broker: every channel's log in this process's memory, shared by the
/// <see cref="MemoryBroker"/> of each node that uses it (one node normally; several in one process for tests).
/// </summary>
/// <remarks>
/// A channel's epoch is fixed for the life of the store, so a restart is seen by clients as a new epoch
/// (<c>recovered:false</c>). It is derived from a per-store seed and the channel name, so reading or subscribing
/// to a channel that was never published to allocates nothing: only channels with publications have a log.
/// Publications are appended and handed to every subscribed node under the channel's lock, which is what makes
/// delivery order equal offset order at every node. The hand-off only queues the publication for the node's fan-out,
/// so the lock is never held for the delivery to subscribers.
/// <para>
/// History past its TTL is dropped when the channel is read or published to, and by a sweep every
/// 10 seconds for channels nobody touches any more, so a channel published to once does not keep its
/// publications for the life of the process. What stays of such a channel is its epoch and head offset (about 150
/// bytes), which keep its offsets from ever restarting within an epoch.
/// </para>
/// <para>
/// Idempotency keys are remembered per channel under the same lock as the append, and forgotten once their window has
/// passed: at the channel's next idempotent publish, or by the sweep.
/// </para>
/// </remarks>
public sealed class MemoryLogStore : IDisposable
{
    /// <summary>How often history past its TTL is dropped from channels nobody reads or publishes to.</summary>
    internal static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<string, ChannelLog> _logs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, MemoryBroker[]> _subscribers = new(StringComparer.Ordinal);
    private readonly Lock _subscribersGate = new();
    private MemoryBroker[] _started = [];
    private readonly TimeProvider _time;
    private readonly byte[] _epochSeed = RandomNumberGenerator.GetBytes(16);
    private ITimer? _sweeper;

    /// <summary>Creates an empty store.</summary>
    public MemoryLogStore(TimeProvider? timeProvider = null) => _time = timeProvider ?? TimeProvider.System;

    /// <summary>Publications held in history, all channels together (those past their TTL included until swept).</summary>
    internal long RetainedPublications
    {
        get
        {
            long total = 0;
            foreach (var (_, log) in _logs)
            {
                lock (log)
                {
                    total += log.Entries.Count;
                }
            }
            return total;
        }
    }

    /// <summary>
    /// Drops history past its TTL in every channel now, and frees the storage of channels left with none. It walks the
    /// channels without a snapshot (no copy of the channel table), one channel lock at a time. A timer
    /// does it every <see cref="SweepInterval"/>.
    /// </summary>
    internal void Sweep()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var (_, log) in _logs)
        {
            lock (log)
            {
                log.Trim(log.Policy, now);
                log.ForgetExpiredKeys(now);
                if (log.Entries.Count == 0)
                {
                    log.Entries.Release();
                }
            }
        }
    }

    /// <summary>Stops the sweep timer.</summary>
    public void Dispose() => _sweeper?.Dispose();

    internal void Start()
    {
        if (_sweeper is null)
        {
            lock (_subscribersGate)
            {
                _sweeper ??= _time.CreateTimer(static state => ((MemoryLogStore)state!).Sweep(), this, SweepInterval, SweepInterval);
            }
        }
    }

    internal PublishResult Publish(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey? idempotency = null, PayloadKind kind = PayloadKind.Json)
    {
        var log = _logs.GetOrAdd(channel, static (name, self) => new ChannelLog(self.EpochOf(name)), this);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (log)
        {
            // Checked and remembered under the same lock as the append, so concurrent repeats make one publication.
            if (idempotency is { } idem && log.TryGetRepeat(idem.Key, now, out var first))
            {
                return new PublishResult(first, Repeated: true);
            }
            var publication = new Publication(log.Head + 1, data, info, now, kind);
            log.Head = publication.Offset;
            // Readers at the head take no lock: they register (a subscription, a parked poll) and then read the head,
            // and this side writes the head and then reads the registrations. Each side needs a full fence between its
            // write and its read, or both could miss the other; this is the publisher's.
            Interlocked.MemoryBarrier();
            log.Append(publication, history, now);
            if (_subscribers.TryGetValue(channel, out var nodes))
            {
                foreach (var node in nodes)
                {
                    node.Deliver(channel, publication, log.Epoch);
                }
            }
            var position = new StreamPosition(publication.Offset, log.Epoch);
            if (idempotency is { } key)
            {
                log.RememberKey(key.Key, position, now + (long)key.Window.TotalMilliseconds);
            }
            return new PublishResult(position, Repeated: false);
        }
    }

    internal HistoryResult Read(string channel, ulong? afterOffset, int limit, HistoryPolicy history)
    {
        if (!_logs.TryGetValue(channel, out var log))
        {
            return new HistoryResult(new StreamPosition(0, EpochOf(channel)), []);
        }
        // A poll at the head (the usual "anything new?") needs neither the lock nor the entries. The head is read
        // once: a publication landing between two reads would move the answer's position past what it holds.
        var head = log.Head;
        if (afterOffset is { } at && at >= head)
        {
            return new HistoryResult(new StreamPosition(head, log.Epoch), []);
        }
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (log)
        {
            log.Trim(history, now);
            var position = new StreamPosition(log.Head, log.Epoch);
            var entries = log.Entries;
            if (limit <= 0 || entries.Count == 0)
            {
                return new HistoryResult(position, []);
            }
            // Offsets in the log are consecutive, so the first one wanted is found by arithmetic, not by a scan.
            var start = afterOffset is { } after
                ? (int)Math.Min((ulong)entries.Count, after + 1 > entries.Oldest.Offset ? after + 1 - entries.Oldest.Offset : 0)
                : Math.Max(0, entries.Count - limit);
            var count = Math.Min(limit, entries.Count - start);
            if (count <= 0)
            {
                return new HistoryResult(position, []);
            }
            var result = new Publication[count];
            for (var i = 0; i < count; i++)
            {
                result[i] = entries[start + i];
            }
            return new HistoryResult(position, result) { More = start + count < entries.Count };
        }
    }

    internal HistoryResult ReadBackward(string channel, ulong? beforeOffset, int limit, HistoryPolicy history)
    {
        if (!_logs.TryGetValue(channel, out var log))
        {
            return new HistoryResult(new StreamPosition(0, EpochOf(channel)), []);
        }
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (log)
        {
            log.Trim(history, now);
            var position = new StreamPosition(log.Head, log.Epoch);
            var entries = log.Entries;
            if (limit <= 0 || entries.Count == 0)
            {
                return new HistoryResult(position, []);
            }
            // One past the index of the newest publication wanted; offsets are consecutive, so it is arithmetic.
            var end = beforeOffset is { } before
                ? (int)Math.Min((ulong)entries.Count, before > entries.Oldest.Offset ? before - entries.Oldest.Offset : 0)
                : entries.Count;
            var start = Math.Max(0, end - limit);
            if (end <= start)
            {
                return new HistoryResult(position, []);
            }
            var result = new Publication[end - start];
            for (var i = 0; i < result.Length; i++)
            {
                result[i] = entries[end - 1 - i];
            }
            return new HistoryResult(position, result) { More = start > 0 };
        }
    }

    internal bool TryPeekHead(string channel, out StreamPosition head)
    {
        if (_logs.TryGetValue(channel, out var log))
        {
            head = new StreamPosition(log.Head, log.Epoch);
            return true;
        }
        head = default;
        return false;
    }

    /// <summary>Hands a control message to every started broker on this store, in this thread, one after the other.</summary>
    internal void SendControl(ReadOnlyMemory<byte> message)
    {
        var copy = message.ToArray();
        foreach (var node in Volatile.Read(ref _started))
        {
            node.DeliverControl(copy);
        }
    }

    internal void AddStarted(MemoryBroker node)
    {
        lock (_subscribersGate)
        {
            if (Array.IndexOf(_started, node) < 0)
            {
                Volatile.Write(ref _started, [.. _started, node]);
            }
        }
    }

    internal void RemoveStarted(MemoryBroker node)
    {
        lock (_subscribersGate)
        {
            Volatile.Write(ref _started, _started.Where(n => n != node).ToArray());
        }
    }

    internal void Subscribe(string channel, MemoryBroker node)
    {
        lock (_subscribersGate)
        {
            var current = _subscribers.GetValueOrDefault(channel, []);
            if (Array.IndexOf(current, node) < 0)
            {
                _subscribers[channel] = [.. current, node];
            }
        }
        // The subscriber's side of the fence described in Publish: the registration is visible before any read that follows.
        Interlocked.MemoryBarrier();
    }

    internal void Unsubscribe(string channel, MemoryBroker node)
    {
        lock (_subscribersGate)
        {
            if (!_subscribers.TryGetValue(channel, out var current) || Array.IndexOf(current, node) < 0)
            {
                return;
            }
            var next = current.Where(n => n != node).ToArray();
            if (next.Length == 0)
            {
                _subscribers.TryRemove(channel, out _);
            }
            else
            {
                _subscribers[channel] = next;
            }
        }
    }

    private string EpochOf(string channel)
    {
        Span<byte> digest = stackalloc byte[32];
        HMACSHA256.HashData(_epochSeed, System.Text.Encoding.UTF8.GetBytes(channel), digest);
        return Convert.ToHexStringLower(digest[..4]);
    }

    private sealed class ChannelLog(string epoch)
    {
        private ulong _head;

        // Idempotency keys seen within their window, and the same keys in the order they expire (one window for all, so
        // the order they came in), to forget them without a scan. Made by the first key: most channels never see one.
        private Dictionary<string, (StreamPosition Position, long Expires)>? _keys;
        private Queue<(string Key, long Expires)>? _keyExpiry;

        public string Epoch { get; } = epoch;

        /// <summary>The last offset; written under the log's lock, read without it (a 64-bit read is atomic here).</summary>
        public ulong Head
        {
            get => Volatile.Read(ref _head);
            set => Volatile.Write(ref _head, value);
        }

        public PublicationRing Entries { get; } = new();

        /// <summary>The history policy of the last publish or read, which the sweep applies.</summary>
        public HistoryPolicy Policy { get; private set; }

        public void Append(Publication publication, HistoryPolicy history, long now)
        {
            Policy = history;
            if (history.Size > 0)
            {
                Entries.Add(publication);
            }
            Trim(history, now);
        }

        public bool TryGetRepeat(string key, long now, out StreamPosition first)
        {
            ForgetExpiredKeys(now);
            if (_keys is not null && _keys.TryGetValue(key, out var seen) && seen.Expires > now)
            {
                first = seen.Position;
                return true;
            }
            first = default;
            return false;
        }

        public void RememberKey(string key, StreamPosition position, long expires)
        {
            (_keys ??= new Dictionary<string, (StreamPosition, long)>(StringComparer.Ordinal))[key] = (position, expires);
            (_keyExpiry ??= new Queue<(string, long)>()).Enqueue((key, expires));
        }

        public void ForgetExpiredKeys(long now)
        {
            if (_keyExpiry is null || _keys is null)
            {
                return;
            }
            while (_keyExpiry.TryPeek(out var next) && next.Expires <= now)
            {
                _keyExpiry.Dequeue();
                // The key may have been seen again after this entry expired; then its newer entry is still queued.
                if (_keys.TryGetValue(next.Key, out var seen) && seen.Expires <= now)
                {
                    _keys.Remove(next.Key);
                }
            }
            if (_keyExpiry.Count == 0)
            {
                _keys = null;
                _keyExpiry = null;
            }
        }

        public void Trim(HistoryPolicy history, long now)
        {
            while (Entries.Count > history.Size)
            {
                Entries.RemoveOldest();
            }
            if (history.Ttl > TimeSpan.Zero)
            {
                var oldest = now - (long)history.Ttl.TotalMilliseconds;
                while (Entries.Count > 0 && Entries.Oldest.Timestamp < oldest)
                {
                    Entries.RemoveOldest();
                }
            }
        }
    }

    /// <summary>A channel's history, oldest first: a growable ring buffer that can be indexed, which a queue cannot.</summary>
    private sealed class PublicationRing
    {
        private Publication[] _items = [];
        private int _head;

        public int Count { get; private set; }

        public Publication Oldest => _items[_head];

        public Publication this[int index] => _items[(_head + index) % _items.Length];

        public void Add(Publication publication)
        {
            if (Count == _items.Length)
            {
                var grown = new Publication[Math.Max(4, _items.Length * 2)];
                for (var i = 0; i < Count; i++)
                {
                    grown[i] = this[i];
                }
                _items = grown;
                _head = 0;
            }
            _items[(_head + Count) % _items.Length] = publication;
            Count++;
        }

        /// <summary>Drops the storage of an empty ring; the next publication allocates it again.</summary>
        public void Release()
        {
            _items = [];
            _head = 0;
        }

        public void RemoveOldest()
        {
            _items[_head] = null!; // let the publication's bytes go
            _head = (_head + 1) % _items.Length;
            Count--;
        }
    }
}

/// <summary>The embedded broker of one node, over a <see cref="MemoryLogStore"/> (its own, or one shared by several nodes in one process).</summary>
/// <remarks>Never unavailable: everything it needs is in this process.</remarks>
public sealed class MemoryBroker : IBroker
{
    private readonly MemoryLogStore _store;
    private readonly bool _ownsStore;
    private readonly ConcurrentDictionary<string, byte> _subscribed = new(StringComparer.Ordinal);
    private IBrokerEventHandler? _handler;

    /// <summary>Creates a broker with a store of its own on the system clock: one node, the default.</summary>
    public MemoryBroker()
        : this(TimeProvider.System)
    {
    }

    /// <summary>Creates a broker with a store of its own on <paramref name="timeProvider"/>'s clock: one node.</summary>
    public MemoryBroker(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _store = new MemoryLogStore(timeProvider);
        _ownsStore = true;
    }

    /// <summary>Creates a broker for one of several nodes sharing <paramref name="store"/>.</summary>
    public MemoryBroker(MemoryLogStore store)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
    }

    /// <summary>The logs this broker reads and appends to.</summary>
    internal MemoryLogStore Store => _store;

    /// <summary>Publications held in history by the store, all channels together.</summary>
    internal long RetainedPublications => _store.RetainedPublications;

    /// <summary>Drops expired history now (see <see cref="MemoryLogStore.Sweep"/>).</summary>
    internal void Sweep() => _store.Sweep();

    /// <inheritdoc/>
    public ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default)
    {
        _handler = handler ?? throw new ArgumentNullException(nameof(handler));
        _store.Start();
        _store.AddStarted(this);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default)
    {
        _ = _handler ?? throw new InvalidOperationException("Start the broker before publishing.");
        return ValueTask.FromResult(_store.Publish(channel, data, info, history, kind: kind).Position);
    }

    /// <inheritdoc/>
    public ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey idempotency, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default)
    {
        _ = _handler ?? throw new InvalidOperationException("Start the broker before publishing.");
        ArgumentException.ThrowIfNullOrEmpty(idempotency.Key, nameof(idempotency));
        return ValueTask.FromResult(_store.Publish(channel, data, info, history, idempotency, kind));
    }

    /// <inheritdoc/>
    public ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(_store.Read(channel, afterOffset, limit, history));

    /// <inheritdoc/>
    public ValueTask<HistoryResult> ReadHistoryBackwardAsync(string channel, ulong? beforeOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(_store.ReadBackward(channel, beforeOffset, limit, history));

    /// <summary>
    /// The channel's head, read at once without a lock; <see langword="false"/> for a channel never published to.
    /// An optimisation for callers that hold this concrete type; nothing in Herald depends on it.
    /// </summary>
    internal bool TryPeekHead(string channel, out StreamPosition head) => _store.TryPeekHead(channel, out head);

    /// <inheritdoc/>
    public ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        _subscribed[channel] = 0;
        _store.Subscribe(channel, this);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        _subscribed.TryRemove(channel, out _);
        _store.Unsubscribe(channel, this);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        _handler = null;
        _store.RemoveStarted(this);
        // A node that stops leaves a shared store: the other nodes go on without handing it anything.
        foreach (var (channel, _) in _subscribed)
        {
            _store.Unsubscribe(channel, this);
        }
        _subscribed.Clear();
        if (_ownsStore)
        {
            _store.Dispose();
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask SendControlAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default)
    {
        _ = _handler ?? throw new InvalidOperationException("Start the broker before sending control messages.");
        _store.SendControl(message);
        return ValueTask.CompletedTask;
    }

    internal void Deliver(string channel, Publication publication, string epoch) => _handler?.HandlePublication(channel, publication, epoch);

    internal void DeliverControl(ReadOnlyMemory<byte> message) => _handler?.HandleControl(message);
}
