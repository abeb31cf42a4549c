using Herald.Protocol;

namespace Herald.Sessions;

/// <summary>
/// One connection's subscription to one channel. Until its subscribe reply is queued it buffers live
/// publications; then it replays the buffer past the reply's position and goes live. That is what makes the
/// seam between recovered history and live publications free of gaps and duplicates.
/// </summary>
/// <remarks>
/// When the client missed more than one read may return (<c>Herald:MaxHistoryLimit</c>), the reply carries the first
/// page and the subscription <em>catches up</em>: the rest of the missed publications are queued as ordinary pushes,
/// page by page, while live ones are still buffered (within <c>MaxQueuedMessages</c>), and it goes live once the pages
/// reach what the buffer holds or the head.
/// </remarks>
internal sealed class Subscription(ClientSession session, string channel, NamespaceOptions ns)
{
    private readonly Lock _gate = new();
    private List<(Publication Publication, string Epoch, byte[] Push)>? _pending = [];
    private bool _live;
    private bool _closed;
    private ulong _lastOffset;
    private string _epoch = "";
    private CancellationTokenSource? _catchUp;
    // Conflated namespaces only: the newest publication not yet taken by the writer, while a marker for it is queued,
    // and the first offset it replaced (the skip notice starts there).
    private Publication? _latest;
    private byte[]? _latestPush;
    private ulong _skipFrom;

    public string Channel { get; } = channel;

    public NamespaceOptions Namespace { get; } = ns;

    public ClientSession Session { get; } = session;

    /// <summary>The epoch of the subscribe reply, once queued; a live subscription never changes it (a new epoch closes it).</summary>
    public string Epoch => Volatile.Read(ref _epoch);

    /// <summary>
    /// Prefetches what <see cref="Deliver"/> reads first beyond this object (its session and lock); the fan-out calls it
    /// a couple of subscribers ahead (see <see cref="CachePrefetch"/>).
    /// </summary>
    public void PrefetchState()
    {
        CachePrefetch.Object(Session);
        CachePrefetch.Object(_gate);
    }

    /// <summary>Called by the fan-out; never blocks. Returns whether the push was queued.</summary>
    public bool Deliver(Publication publication, string epoch, ref PushFrames frames)
    {
        var push = frames.For(Session.Encoding);
        lock (_gate)
        {
            if (_closed)
            {
                return false;
            }
            if (!_live)
            {
                if (_pending!.Count >= Session.Node.Options.MaxQueuedMessages)
                {
                    _closed = true;
                    _pending = null;
                    Session.OnSlowConsumer();
                    return false;
                }
                _pending.Add((publication, epoch, push));
                return false;
            }
            return DeliverLive(publication, epoch, push);
        }
    }

    /// <summary>
    /// Queues the subscribe reply, then everything buffered after <paramref name="position"/>, and goes live. Returns
    /// <see langword="false"/>, queuing nothing, when the subscription was closed while it was being set up (its buffer
    /// overflowed, or the server unsubscribed the connection meanwhile).
    /// </summary>
    public bool Activate(byte[] reply, StreamPosition position)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return false;
            }
            _epoch = position.Epoch;
            Session.Enqueue(reply, this, position.Offset);
            _lastOffset = position.Offset;
            _live = true;
            foreach (var (publication, epoch, push) in _pending!)
            {
                DeliverLive(publication, epoch, push);
            }
            _pending = null;
            return true;
        }
    }

    /// <summary>
    /// Queues the subscribe reply, which carries the first page of what the client missed, up to
    /// <paramref name="position"/>, and starts catching up: live publications stay buffered, and <see cref="Close"/>
    /// cancels <paramref name="stop"/> (the caller's, disposed by it after <see cref="EndCatchUp"/>). Returns
    /// <see langword="false"/> when the subscription is already closed.
    /// </summary>
    public bool BeginCatchUp(byte[] reply, StreamPosition position, CancellationTokenSource stop)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return false;
            }
            _epoch = position.Epoch;
            _lastOffset = position.Offset;
            _catchUp = stop;
            Session.Enqueue(reply, this, position.Offset);
            return true;
        }
    }

    /// <summary>Where catching up has got to: the last offset queued, in the reply's epoch.</summary>
    public StreamPosition CaughtUpTo
    {
        get
        {
            lock (_gate)
            {
                return new StreamPosition(_lastOffset, _epoch);
            }
        }
    }

    /// <summary>
    /// Queues one missed publication as a push while catching up. Returns <see langword="false"/> when the subscription
    /// is closed or the connection's queue refused it (the connection is then being closed).
    /// </summary>
    public bool CatchUp(Publication publication)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return false;
            }
            if (publication.Offset <= _lastOffset)
            {
                return true;
            }
            if (publication.Offset != _lastOffset + 1)
            {
                _closed = true;
                _pending = null;
                Session.OnInsufficientState($"channel {Channel} skipped from offset {_lastOffset} to {publication.Offset} while catching up");
                return false;
            }
            _lastOffset = publication.Offset;
            // Encoded for this subscriber alone: catching up is one client's recovery, not the shared fan-out.
            return Session.Outbound.TryEnqueue(PushFrames.Encode(Channel, publication, Session.Encoding), publication.AcceptedTimestamp, this, publication.Offset);
        }
    }

    /// <summary>
    /// Goes live when the buffer of live publications starts at or before the next offset to queue (or in another
    /// epoch, which live delivery turns into 4004), or when <paramref name="atHead"/> says history has been read up to
    /// a head that every buffered publication is past. Returns whether catching up is over (live, or closed).
    /// </summary>
    public bool TryGoLive(bool atHead)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return true;
            }
            var (first, epoch, _) = _pending!.Count > 0 ? _pending[0] : default;
            if (!atHead && (first is null || (epoch == _epoch && first.Offset > _lastOffset + 1)))
            {
                return false;
            }
            _live = true;
            foreach (var (publication, pendingEpoch, push) in _pending)
            {
                DeliverLive(publication, pendingEpoch, push);
            }
            _pending = null;
            return true;
        }
    }

    /// <summary>Called when catching up has ended, however it ended; <see cref="Close"/> no longer cancels its token.</summary>
    public void EndCatchUp()
    {
        lock (_gate)
        {
            _catchUp = null;
        }
    }

    public void Close()
    {
        lock (_gate)
        {
            _closed = true;
            _pending = null;
            _latest = null;
            _latestPush = null;
            _catchUp?.Cancel();
        }
    }

    private bool DeliverLive(Publication publication, string epoch, byte[] push)
    {
        if (epoch != _epoch)
        {
            // The log was replaced under a live subscriber; it must resubscribe to learn the new epoch.
            _closed = true;
            Session.OnInsufficientState($"channel {Channel} changed epoch");
            return false;
        }
        if (publication.Offset <= _lastOffset)
        {
            return false; // already delivered as part of the recovered history
        }
        if (publication.Offset != _lastOffset + 1)
        {
            if (Namespace.Conflate)
            {
                // A latest-value subscriber wants the newest, not every offset: the ones that never reached it (the
                // node's fan-out dropped its backlog, or the broker lost them) are skipped, and it is told so.
                var from = _lastOffset + 1;
                _lastOffset = publication.Offset;
                return DeliverPastGap(publication, push, from);
            }
            _closed = true;
            Session.OnInsufficientState($"channel {Channel} skipped from offset {_lastOffset} to {publication.Offset}");
            return false;
        }
        _lastOffset = publication.Offset;
        return Namespace.Conflate
            ? DeliverLatest(publication, push)
            : Session.Outbound.TryEnqueue(push, publication.AcceptedTimestamp, this, publication.Offset);
    }

    /// <summary>
    /// A conflated channel's delivery: each push is queued while the connection's queue is at most half full, so a
    /// subscriber that keeps up gets every offset. Past that, the subscription queues one marker and keeps only its newest
    /// publication, replaced by each newer one, until the writer reaches the marker and takes it with a skip notice for
    /// the ones it replaced (<see cref="TakeLatest"/>). However fast the channel, a subscriber that falls behind holds at
    /// most one push of it and is never closed for it.
    /// </summary>
    private bool DeliverLatest(Publication publication, byte[] push)
    {
        if (_latest is null && !Session.Outbound.IsPastHalf)
        {
            return Session.Outbound.TryEnqueue(push, publication.AcceptedTimestamp, this, publication.Offset);
        }
        if (_latest is null)
        {
            _skipFrom = publication.Offset;
            _latest = publication;
            _latestPush = push;
            return Session.Outbound.TryEnqueueMarker(this);
        }
        _latest = publication;
        _latestPush = push;
        return true;
    }

    /// <summary>
    /// A conflated channel's delivery after offsets from <paramref name="from"/> on never reached this node's fan-out:
    /// the publication goes out behind a skip notice for them, as if the subscriber had fallen behind (which it has).
    /// </summary>
    private bool DeliverPastGap(Publication publication, byte[] push, ulong from)
    {
        var marked = _latest is not null;
        if (!marked)
        {
            _skipFrom = from;
        }
        _latest = publication;
        _latestPush = push;
        return marked || Session.Outbound.TryEnqueueMarker(this);
    }

    /// <summary>
    /// Called by the connection's writer when it reaches this subscription's marker: takes the newest publication waiting
    /// (its shared push bytes) and, when it replaced older ones, a skip notice naming them, positioned (for SSE ids) at
    /// the last offset skipped. <see langword="false"/> when nothing waits (the subscription was closed meanwhile).
    /// </summary>
    internal bool TakeLatest(out OutboundMessage skipped, out OutboundMessage push)
    {
        lock (_gate)
        {
            var latest = _latest;
            var bytes = _latestPush;
            _latest = null;
            _latestPush = null;
            if (_closed || latest is null)
            {
                skipped = push = default;
                return false;
            }
            skipped = default;
            if (latest.Offset > _skipFrom)
            {
                var range = new OffsetRange(_skipFrom, latest.Offset - 1);
                var notice = ProtocolWriter.EncodeSkipped(Channel, range);
                skipped = new OutboundMessage(Session.Encoding == WireEncoding.MsgPack ? MsgPackCodec.FromJson(notice) : notice, 0, this, range.To);
                Session.Node.Metrics.ConflatedSkipped(range.To - range.From + 1);
            }
            push = new OutboundMessage(bytes!, latest.AcceptedTimestamp, this, latest.Offset);
            return true;
        }
    }
}
