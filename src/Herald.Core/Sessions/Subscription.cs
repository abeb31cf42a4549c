using Herald.Protocol;

namespace Herald.Sessions;

/// <summary>
/// One connection's subscription to one channel. Until its subscribe reply is queued it buffers live
/// publications; then it replays the buffer past the reply's position and goes live. That is what makes the
/// seam between recovered history and live publications free of gaps and duplicates.
/// </summary>
internal sealed class Subscription(ClientSession session, string channel, NamespaceOptions ns)
{
    private readonly Lock _gate = new();
    private List<(Publication Publication, string Epoch, byte[] Push)>? _pending = [];
    private bool _live;
    private bool _closed;
    private ulong _lastOffset;
    private string _epoch = "";

    public string Channel { get; } = channel;

    public NamespaceOptions Namespace { get; } = ns;

    public ClientSession Session { get; } = session;

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

    /// <summary>Queues the subscribe reply, then everything buffered after <paramref name="position"/>, and goes live.</summary>
    public void Activate(byte[] reply, StreamPosition position)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }
            Session.Enqueue(reply);
            _epoch = position.Epoch;
            _lastOffset = position.Offset;
            _live = true;
            foreach (var (publication, epoch, push) in _pending!)
            {
                DeliverLive(publication, epoch, push);
            }
            _pending = null;
        }
    }

    public void Close()
    {
        lock (_gate)
        {
            _closed = true;
            _pending = null;
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
            _closed = true;
            Session.OnInsufficientState($"channel {Channel} skipped from offset {_lastOffset} to {publication.Offset}");
            return false;
        }
        _lastOffset = publication.Offset;
        return Session.Outbound.TryEnqueue(push, publication.AcceptedTimestamp);
    }
}
