using System.Threading.Channels;

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
    private readonly Channel<OutboundMessage> _channel;
    private readonly int _maxMessages;
    private readonly long _maxBytes;
    private readonly Action _onOverflow;
    private long _bytes;
    private volatile bool _completed;
    private int _tripped;
    // Completed when the writer has made room (or the queue closed); shared by every waiter of the connection.
    private TaskCompletionSource? _room;

    /// <summary>Creates the queue.</summary>
    public OutboundQueue(int maxMessages, long maxBytes, Action onOverflow)
    {
        _maxMessages = maxMessages;
        _maxBytes = maxBytes;
        _onOverflow = onOverflow ?? throw new ArgumentNullException(nameof(onOverflow));
        _channel = Channel.CreateBounded<OutboundMessage>(new BoundedChannelOptions(maxMessages)
        {
            FullMode = BoundedChannelFullMode.Wait, // so that TryWrite reports "full" instead of silently dropping
            SingleReader = false,
            SingleWriter = false,
            AllowSynchronousContinuations = false,
        });
        Reader = new ConflatingReader(this);
    }

    /// <summary>
    /// Called after each message is queued, on the thread that queued it, for a transport that writes as soon as a
    /// message arrives instead of waiting on <see cref="Reader"/>. Set once, before the first message.
    /// </summary>
    public Action? Queued { get; set; }

    /// <summary>
    /// The consuming side, for the connection's single writer. A conflated subscription's marker comes out of it as that
    /// subscription's skip notice (when it skipped offsets) and its newest push, taken when the writer reaches the marker.
    /// </summary>
    public ChannelReader<OutboundMessage> Reader { get; }

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
        if (Interlocked.Add(ref _bytes, message.Length) > _maxBytes || !_channel.Writer.TryWrite(new OutboundMessage(message, acceptedTimestamp, source, offset)))
        {
            Interlocked.Add(ref _bytes, -message.Length);
            // A queue that was completed refuses quietly: the connection is closing already, and tripping now would
            // drop what it still has to send (an error reply before the close frame).
            if (!_completed)
            {
                Trip();
            }
            return false;
        }
        Queued?.Invoke();
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
        if (HasRoom || _channel.Reader.Completion.IsCompleted)
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
        if (HasRoom || _channel.Reader.Completion.IsCompleted)
        {
            WakeRoomWaiters();
        }
        return room.Task.WaitAsync(cancellationToken);
    }

    private bool HasRoom => _channel.Reader.Count <= _maxMessages / 2 && Volatile.Read(ref _bytes) <= _maxBytes / 2;

    private void WakeRoomWaiters() => Interlocked.Exchange(ref _room, null)?.TrySetResult();

    /// <summary>Accepts no more messages; the writer still drains what is queued.</summary>
    public void Complete()
    {
        _completed = true;
        _channel.Writer.TryComplete();
        WakeRoomWaiters();
    }

    /// <summary>Accepts no more messages and drops what is queued.</summary>
    public void Discard()
    {
        _completed = true;
        _channel.Writer.TryComplete();
        while (_channel.Reader.TryRead(out var dropped))
        {
            Interlocked.Add(ref _bytes, -dropped.Bytes.Length);
        }
        WakeRoomWaiters();
    }

    private void Trip()
    {
        if (Interlocked.Exchange(ref _tripped, 1) == 0)
        {
            Discard();
            _onOverflow();
        }
    }

    /// <summary>
    /// The writer's view of the queue: what was queued, in order, except that a conflated subscription's marker is
    /// replaced by the subscription's skip notice and newest push at the moment the writer reaches it. Used by the
    /// connection's one writer only, so the push held back behind a notice needs no lock.
    /// </summary>
    private sealed class ConflatingReader(OutboundQueue queue) : ChannelReader<OutboundMessage>
    {
        private readonly ChannelReader<OutboundMessage> _inner = queue._channel.Reader;
        private OutboundMessage _held;
        private bool _holding;

        public override Task Completion => _inner.Completion;

        public override bool CanCount => true;

        public override bool CanPeek => true;

        public override int Count => _inner.Count + (_holding ? 1 : 0);

        public override bool TryRead(out OutboundMessage item)
        {
            if (_holding)
            {
                item = _held;
                _held = default;
                _holding = false;
                return true;
            }
            while (_inner.TryRead(out item))
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
            return _inner.TryPeek(out item);
        }

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) =>
            _holding ? new ValueTask<bool>(true) : _inner.WaitToReadAsync(cancellationToken);
    }
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
