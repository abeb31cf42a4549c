using System.Buffers;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;

namespace Herald.Sessions;

/// <summary>
/// The bounded queue of messages waiting to be written to one connection. Its single writer (the transport)
/// drains everything queued into one frame and one write.
/// </summary>
/// <remarks>
/// Bounded by count and by bytes. The full-mode policy is "refuse": when either bound is passed the queue trips
/// once, drops what it holds (so the memory is freed at once) and calls the overflow hook, which closes the
/// connection as a slow consumer. Publishers never wait for a slow subscriber.
/// </remarks>
internal sealed class OutboundQueue
{
    // A connection holds one of these for its whole life, idle or not, so it is a slot and a ring under a lock rather
    // than a bounded Channel<T> (which with its reader, writer, deque and cached waiters cost ~0.9 KiB per idle
    // connection). A message queued on an empty queue takes the slot, so a reader that keeps up never needs the ring;
    // the ring is made when two or more wait, and dropped again when a burst made it large and it has drained.
    private const int InitialCapacity = 4;
    private const int KeptCapacity = 16;

    private readonly Lock _lock = new();
    private readonly int _maxMessages;
    private readonly long _maxBytes;
    // The session: an interface rather than two delegates, which every connection would carry.
    private readonly IOutboundQueueOwner _owner;
    private readonly QueueReader _reader;
    // The oldest message, when it was queued on an empty queue; otherwise the messages are in the ring, in order.
    private OutboundMessage _slot;
    private bool _inSlot;
    private OutboundMessage[]? _ring;
    // The small ring put aside while a burst uses a rented one.
    private OutboundMessage[]? _spare;
    private int _head;
    private int _inRing;
    // Everything queued: the slot's message and the ring's.
    private int _count;
    private bool _completed;
    private long _bytes;
    private int _tripped;
    // Completed when the writer has made room (or the queue closed); shared by every waiter of the connection.
    private TaskCompletionSource? _room;

    /// <summary>Creates the queue of <paramref name="owner"/>, which hears when a message is queued and when the queue overflows.</summary>
    public OutboundQueue(int maxMessages, long maxBytes, IOutboundQueueOwner owner)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxMessages);
        _maxMessages = maxMessages;
        _maxBytes = maxBytes;
        _owner = owner ?? throw new ArgumentNullException(nameof(owner));
        _reader = new QueueReader(this);
    }

    /// <summary>Creates a queue whose overflow calls <paramref name="onOverflow"/> (and whose messages no one is told about).</summary>
    public OutboundQueue(int maxMessages, long maxBytes, Action onOverflow)
        : this(maxMessages, maxBytes, new OverflowAction(onOverflow ?? throw new ArgumentNullException(nameof(onOverflow))))
    {
    }

    private sealed class OverflowAction(Action onOverflow) : IOutboundQueueOwner
    {
        public void Overflowed() => onOverflow();

        public void Queued()
        {
        }
    }

    /// <summary>
    /// The consuming side, for the connection's single writer (one reader at a time). A conflated subscription's marker
    /// comes out of it as that subscription's skip notice (when it skipped offsets) and its newest push, taken when the
    /// writer reaches the marker.
    /// </summary>
    public ChannelReader<OutboundMessage> Reader => _reader;

    /// <summary>
    /// Whether the queue is closed and everything in it has been read: <see cref="Reader"/>'s completion, without making
    /// the task that <see cref="ChannelReader{T}.Completion"/> has to make.
    /// </summary>
    public bool IsFinished => _reader.IsFinished;

    /// <summary>Bytes queued and not yet written.</summary>
    public long QueuedBytes => Volatile.Read(ref _bytes);

    /// <summary>Whether the queue overflowed.</summary>
    public bool Tripped => Volatile.Read(ref _tripped) != 0;

    /// <summary>Queues a message; returns <see langword="false"/> when the queue is closed or has just overflowed.</summary>
    /// <param name="message">The encoded message.</param>
    /// <param name="acceptedTimestamp">
    /// For a push, its publication's <see cref="Protocol.Publication.AcceptedTimestamp"/>, so that the writer can record
    /// the delivery's latency when it sends it; 0 for anything else.
    /// </param>
    /// <param name="source">
    /// For a subscription's reply or push, that subscription, and <paramref name="offset"/> the channel position the
    /// message leaves its client at; a transport that names positions on the wire (SSE event ids) reads them.
    /// </param>
    /// <param name="offset">See <paramref name="source"/>.</param>
    public bool TryEnqueue(ReadOnlyMemory<byte> message, long acceptedTimestamp = 0, Subscription? source = null, ulong offset = 0)
    {
        if (Volatile.Read(ref _tripped) != 0)
        {
            return false;
        }
        bool full;
        bool first;
        lock (_lock)
        {
            if (_completed)
            {
                return false; // closing: refused, but that is no overflow
            }
            full = _count == _maxMessages || Volatile.Read(ref _bytes) + message.Length > _maxBytes;
            if (!full)
            {
                var queued = new OutboundMessage(message, acceptedTimestamp, source, offset);
                if (_count == 0)
                {
                    _slot = queued;
                    _inSlot = true;
                }
                else
                {
                    var ring = _ring is { } current && _inRing < current.Length ? current : Grow();
                    ring[(_head + _inRing) % ring.Length] = queued;
                    _inRing++;
                }
                _count++;
                Interlocked.Add(ref _bytes, message.Length);
            }
            first = _count == 1;
        }
        if (full)
        {
            Trip();
            return false;
        }
        // The reader only ever waits on an empty queue, so only the first message has anyone to wake.
        if (first)
        {
            _reader.Wake();
        }
        _owner.Queued();
        return true;
    }

    /// <summary>
    /// Queues a conflated subscription's marker: when the writer reaches it, it takes the subscription's newest push
    /// (<see cref="Subscription.TakeLatest"/>). Counts as one message and no bytes; the push's bytes count once taken.
    /// </summary>
    public bool TryEnqueueMarker(Subscription source) => TryEnqueue(ReadOnlyMemory<byte>.Empty, 0, source);

    /// <summary>
    /// Whether the queue is more than half full, by count or by bytes: past that, a conflated subscription stops queuing
    /// each push and keeps only its newest, so a connection that keeps up sees every offset and one that does not is
    /// never closed for it.
    /// </summary>
    public bool IsPastHalf => !HasRoom;

    private OutboundMessage[] Grow()
    {
        var old = _ring;
        var size = old is null ? InitialCapacity : Math.Min(old.Length * 2, _maxMessages);
        // A burst's larger ring is rented: a connection that falls behind at every fan-out would otherwise allocate
        // (and drop) its ring at every burst. The small ring an idle connection may keep is its own.
        var ring = size > KeptCapacity ? ArrayPool<OutboundMessage>.Shared.Rent(size) : new OutboundMessage[size];
        for (var i = 0; i < _inRing; i++)
        {
            ring[i] = old![(_head + i) % old.Length];
        }
        _head = 0;
        _ring = ring;
        if (old is { Length: <= KeptCapacity } && ring.Length > KeptCapacity)
        {
            // The connection's own small ring waits for the burst to drain, then serves again: no allocation per burst.
            Array.Clear(old);
            _spare = old;
        }
        else
        {
            ReturnRing(old);
        }
        return ring;
    }

    /// <summary>Gives a rented ring back to the pool, cleared (it holds the messages' bytes and subscriptions).</summary>
    private static void ReturnRing(OutboundMessage[]? ring)
    {
        if (ring is { Length: > KeptCapacity })
        {
            ArrayPool<OutboundMessage>.Shared.Return(ring, clearArray: true);
        }
    }

    /// <summary>Tells the queue that the writer has written <paramref name="bytes"/> bytes of what it took.</summary>
    public void Written(long bytes)
    {
        Interlocked.Add(ref _bytes, -bytes);
        if (Volatile.Read(ref _room) is not null && HasRoom)
        {
            WakeRoomWaiters();
        }
    }

    /// <summary>
    /// Waits until the queue is at most half full by count and by bytes, or closed. For a sender that has many messages
    /// to queue and may wait (a subscription catching up from history), so that it paces itself by the connection's
    /// writer instead of tripping the slow-consumer limit; fan-out never waits.
    /// </summary>
    public Task WaitForRoomAsync(CancellationToken cancellationToken)
    {
        if (HasRoom || IsFinished)
        {
            return Task.CompletedTask;
        }
        var room = Volatile.Read(ref _room);
        if (room is null)
        {
            var fresh = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            room = Interlocked.CompareExchange(ref _room, fresh, null) ?? fresh;
        }
        // Checked again after the waiter is in place: the writer may have made room in between without seeing it.
        if (HasRoom || IsFinished)
        {
            WakeRoomWaiters();
        }
        return room.Task.WaitAsync(cancellationToken);
    }

    private bool HasRoom => Volatile.Read(ref _count) <= _maxMessages / 2 && Volatile.Read(ref _bytes) <= _maxBytes / 2;

    /// <summary>Closed and drained: nothing more will be read.</summary>
    private bool IsDone => Volatile.Read(ref _completed) && Volatile.Read(ref _count) == 0;

    private void WakeRoomWaiters() => Interlocked.Exchange(ref _room, null)?.TrySetResult();

    /// <summary>Accepts no more messages; the writer still drains what is queued.</summary>
    public void Complete()
    {
        lock (_lock)
        {
            _completed = true;
        }
        _reader.Wake();
        WakeRoomWaiters();
    }

    /// <summary>Accepts no more messages and drops what is queued.</summary>
    public void Discard()
    {
        lock (_lock)
        {
            _completed = true;
            long dropped = _inSlot ? _slot.Bytes.Length : 0;
            for (var i = 0; i < _inRing; i++)
            {
                dropped += _ring![(_head + i) % _ring.Length].Bytes.Length;
            }
            Interlocked.Add(ref _bytes, -dropped);
            _slot = default;
            _inSlot = false;
            ReturnRing(_ring);
            _ring = null;
            _spare = null;
            _head = 0;
            _inRing = 0;
            _count = 0;
        }
        _reader.Wake();
        WakeRoomWaiters();
    }

    private void Trip()
    {
        if (Interlocked.Exchange(ref _tripped, 1) == 0)
        {
            Discard();
            _owner.Overflowed();
        }
    }

    private bool TryDequeue(bool remove, out OutboundMessage message)
    {
        lock (_lock)
        {
            if (_inSlot)
            {
                message = _slot;
                if (remove)
                {
                    _slot = default; // the bytes and the subscription are not kept alive by an empty slot
                    _inSlot = false;
                    _count--;
                }
                return true;
            }
            if (_inRing == 0)
            {
                message = default;
                return false;
            }
            var ring = _ring!;
            message = ring[_head];
            if (!remove)
            {
                return true;
            }
            ring[_head] = default;
            _head = (_head + 1) % ring.Length;
            _inRing--;
            _count--;
            if (_inRing == 0)
            {
                _head = 0;
                if (ring.Length > KeptCapacity)
                {
                    _ring = _spare; // a burst's ring goes back to the pool once it has drained
                    _spare = null;
                    ReturnRing(ring);
                }
            }
            return true;
        }
    }

    /// <summary>
    /// The reader: <see cref="ChannelReader{T}"/>'s surface over the ring, with its one waiter kept in place
    /// (<see cref="ManualResetValueTaskSourceCore{T}"/>), so that waiting for the next message allocates nothing. What
    /// was queued comes out in order, except that a conflated subscription's marker is replaced by the subscription's
    /// skip notice and newest push at the moment the writer reaches it. Used by the connection's one writer only, so the
    /// push held back behind a notice needs no lock.
    /// </summary>
    private sealed class QueueReader(OutboundQueue queue) : ChannelReader<OutboundMessage>, IValueTaskSource<bool>
    {
        private ManualResetValueTaskSourceCore<bool> _waiter = new() { RunContinuationsAsynchronously = true };
        private OutboundMessage _held;
        private bool _holding;
        // 1 while a WaitToReadAsync is pending; whoever swaps it to 0 completes it, once.
        private int _waiting;
        private CancellationTokenRegistration _cancellation;
        private TaskCompletionSource? _completion;

        public override bool CanCount => true;

        public override bool CanPeek => true;

        public override int Count => Volatile.Read(ref queue._count) + (_holding ? 1 : 0);

        public bool IsFinished => !_holding && queue.IsDone;

        public override Task Completion
        {
            get
            {
                if (IsFinished)
                {
                    return Task.CompletedTask;
                }
                var completion = Volatile.Read(ref _completion);
                if (completion is null)
                {
                    var fresh = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    completion = Interlocked.CompareExchange(ref _completion, fresh, null) ?? fresh;
                }
                if (IsFinished)
                {
                    completion.TrySetResult();
                }
                return completion.Task;
            }
        }

        public override bool TryRead(out OutboundMessage item)
        {
            var read = TakeNext(out item);
            if (Volatile.Read(ref _completion) is { } completion && IsFinished)
            {
                completion.TrySetResult();
            }
            return read;
        }

        private bool TakeNext(out OutboundMessage item)
        {
            if (_holding)
            {
                item = _held;
                _held = default;
                _holding = false;
                return true;
            }
            // Outside the queue's lock: a subscription queues its marker under its own lock, and TakeLatest takes it.
            while (queue.TryDequeue(remove: true, out item))
            {
                if (!item.Bytes.IsEmpty || item.Source is not { } source)
                {
                    return true;
                }
                if (source.TakeLatest(out var skipped, out var push))
                {
                    Interlocked.Add(ref queue._bytes, skipped.Bytes.Length + push.Bytes.Length);
                    if (skipped.Bytes.IsEmpty)
                    {
                        item = push;
                    }
                    else
                    {
                        item = skipped;
                        _held = push;
                        _holding = true;
                    }
                    return true;
                }
                // The subscription ended after it queued the marker: nothing to write for it.
            }
            return false;
        }

        public override bool TryPeek(out OutboundMessage item)
        {
            if (_holding)
            {
                item = _held;
                return true;
            }
            return queue.TryDequeue(remove: false, out item);
        }

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<bool>(cancellationToken);
            }
            if (_holding || Volatile.Read(ref queue._count) > 0)
            {
                return new ValueTask<bool>(true);
            }
            if (queue.IsFinished)
            {
                if (Volatile.Read(ref _completion) is { } completion)
                {
                    completion.TrySetResult();
                }
                return new ValueTask<bool>(false);
            }
            if (Volatile.Read(ref _waiting) != 0)
            {
                throw new InvalidOperationException("The outbound queue has one reader: a WaitToReadAsync is already pending.");
            }
            // Reset before the waiter is armed: once _waiting is 1 a producer may complete it at any moment. Armed with
            // a full fence, so that the check below cannot be read before a producer can see the waiter.
            _waiter.Reset();
            var version = _waiter.Version;
            Interlocked.Exchange(ref _waiting, 1);
            // A message (or the end) may have come between the checks above and the waiter being armed.
            if (Volatile.Read(ref queue._count) > 0 || Volatile.Read(ref queue._completed))
            {
                Wake();
            }
            else if (cancellationToken.CanBeCanceled)
            {
                _cancellation = cancellationToken.UnsafeRegister(
                    static (state, token) => ((QueueReader)state!).Cancel(token), this);
            }
            return new ValueTask<bool>(this, version);
        }

        /// <summary>Completes a pending wait: there is something to read, or the queue ended.</summary>
        public void Wake()
        {
            if (Interlocked.Exchange(ref _waiting, 0) == 1)
            {
                _waiter.SetResult(true);
            }
        }

        private void Cancel(CancellationToken token)
        {
            if (Interlocked.Exchange(ref _waiting, 0) == 1)
            {
                _waiter.SetException(new OperationCanceledException(token));
            }
        }

        bool IValueTaskSource<bool>.GetResult(short token)
        {
            _cancellation.Dispose();
            _cancellation = default;
            // Woken with nothing queued means the queue ended; the caller's next TryRead finds out the rest.
            return _waiter.GetResult(token) && (Volatile.Read(ref queue._count) > 0 || !queue.IsDone);
        }

        ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _waiter.GetStatus(token);

        void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _waiter.OnCompleted(continuation, state, token, flags);
    }
}

/// <summary>What an <see cref="OutboundQueue"/> tells its owner, on the thread that caused it.</summary>
internal interface IOutboundQueueOwner
{
    /// <summary>The queue passed a bound: it has dropped what it held and refuses more (a slow consumer).</summary>
    void Overflowed();

    /// <summary>A message was queued, for a transport that writes as soon as a message arrives instead of waiting on the reader.</summary>
    void Queued();
}

/// <summary>A message waiting in an <see cref="OutboundQueue"/>.</summary>
/// <param name="Bytes">The encoded message.</param>
/// <param name="AcceptedTimestamp">For a push, when its publication was accepted (a Stopwatch timestamp); 0 otherwise.</param>
/// <param name="Source">
/// For a subscribe reply or a push, its subscription; <see langword="null"/> otherwise. Empty bytes with a source are a
/// conflated subscription's marker (<see cref="OutboundQueue.TryEnqueueMarker"/>); empty bytes without are a heartbeat.
/// </param>
/// <param name="Offset">With <paramref name="Source"/>, the channel's offset once this message is read (in <see cref="Subscription.Epoch"/>).</param>
internal readonly record struct OutboundMessage(ReadOnlyMemory<byte> Bytes, long AcceptedTimestamp, Subscription? Source = null, ulong Offset = 0);
