using Herald.Sessions;
using Herald.Protocol;
using Microsoft.Extensions.Logging;

namespace Herald;

// The fan-out dispatcher: the broker hands each publication to its channel's queue and returns; one work item per
// channel at a time delivers it to the channel's parked polls and subscribers. Publishers therefore wait for the log
// append only, never for the delivery to every subscriber, and each channel's publications still go out in offset order.
public sealed partial class HeraldNode
{
    /// <summary>
    /// Runs a channel's fan-out work item: the thread pool, unless a test replaces it (to hold the fan-out, or to run it
    /// inline in the publisher's thread).
    /// </summary>
    internal Action<IThreadPoolWorkItem> ScheduleFanOut { get; init; } = static work => ThreadPool.UnsafeQueueUserWorkItem(work, preferLocal: false);

    /// <summary>Publications handed to this node's fan-out and not yet delivered, all channels together.</summary>
    internal long DispatchBacklog
    {
        get
        {
            long total = 0;
            foreach (var (_, entry) in _channels)
            {
                total += entry.FanOut.Count;
            }
            return total;
        }
    }

    /// <summary>
    /// With <see cref="HeraldOptions.PublishBackpressure"/>, completes once <paramref name="channel"/>'s fan-out backlog
    /// on this node is under <see cref="HeraldOptions.MaxDispatchBacklog"/> (at once, without allocating, in the usual
    /// case), so that a publisher faster than the fan-out is slowed down before it appends rather than growing the
    /// backlog. Without it, completes at once: the publisher never waits for the fan-out.
    /// </summary>
    internal ValueTask WaitForFanOutRoomAsync(string channel, CancellationToken cancellationToken) =>
        Options.PublishBackpressure ? WaitForFanOutBelowLimitAsync(channel, cancellationToken) : ValueTask.CompletedTask;

    /// <summary>
    /// Completes once <paramref name="channel"/>'s fan-out backlog on this node is under
    /// <see cref="HeraldOptions.MaxDispatchBacklog"/>, whatever <see cref="HeraldOptions.PublishBackpressure"/> says: for
    /// callers that pace a burst of their own (tests publishing straight into the broker).
    /// </summary>
    internal ValueTask WaitForFanOutBelowLimitAsync(string channel, CancellationToken cancellationToken) =>
        _channels.TryGetValue(channel, out var entry) ? entry.FanOut.WaitForRoomAsync(cancellationToken) : ValueTask.CompletedTask;

    /// <summary>
    /// The broker's hand-off, called in offset order per channel (memory: under the log's lock): notes the head and
    /// queues the publication for the channel's fan-out. Allocates nothing once the channel's queue has grown.
    /// </summary>
    private void HandlePublication(string channel, Publication publication, string epoch)
    {
        if (!_channels.TryGetValue(channel, out var entry))
        {
            return;
        }
        // The publication is in the log before it is handed over, so the head can be told at once: a poll that trusts
        // it reads the log and finds the publication there, and the head is never ahead of the history.
        entry.NotePublished(publication.Offset, epoch);
        if (_stopping.IsCancellationRequested)
        {
            return; // shutdown drops: connections are closing with 1001 and recover from history
        }
        entry.FanOut.Enqueue(publication, epoch);
    }

    /// <summary>
    /// One publication's fan-out, in the channel's work item: wakes the parked polls, then encodes the push once per
    /// encoding that a subscriber speaks (on first need) and queues the same bytes to every subscriber of that encoding.
    /// </summary>
    private void FanOut(ChannelEntry entry, string channel, Publication publication, string epoch)
    {
        entry.WakePolls();
        var all = entry.Subscribers;
        if (all.Length == 0 || all[0] is null)
        {
            return;
        }
        var push = new PushFrames(channel, publication);
        var delivered = 0;
        for (var i = 0; i < all.Length; i++)
        {
            var subscription = all[i];
            if (subscription is null)
            {
                break; // the spare capacity after the last subscriber
            }
            // Each subscriber is cold at a low rate: its subscription CachePrefetch.Ahead ahead, then its session and lock half as far.
            if (i + CachePrefetch.Ahead < all.Length)
            {
                CachePrefetch.Object(all[i + CachePrefetch.Ahead]);
            }
            if (i + (CachePrefetch.Ahead / 2) < all.Length)
            {
                all[i + (CachePrefetch.Ahead / 2)]?.PrefetchState();
            }
            if (subscription.Deliver(publication, epoch, ref push))
            {
                delivered++;
            }
        }
        Metrics.Delivered(delivered);
    }

    /// <summary>
    /// One channel's queue of publications waiting for fan-out, and its worker: an actor with no thread of its own. The
    /// enqueue that finds no worker running schedules one; the worker drains the queue in order and hands its thread back
    /// after a few publications, so a busy channel does not hold a thread that other channels and the writers need.
    /// </summary>
    internal sealed class FanOutQueue(HeraldNode node, ChannelEntry entry, string channel) : IThreadPoolWorkItem
    {
        // Publications per turn before the worker queues itself again behind whatever else waits for the thread pool.
        private const int PerTurn = 16;

        private readonly Lock _lock = new();
        private Queue<(Publication Publication, string Epoch)>? _items; // made at the first publication; keeps its capacity
        private TaskCompletionSource? _room;
        private bool _running;
        private int _count;

        /// <summary>Publications queued and not yet delivered.</summary>
        public int Count => Volatile.Read(ref _count);

        // With backpressure, publishers through this node stop at the limit, so only what they cannot hold back (other
        // nodes' publications, concurrent publishers past the wait) goes beyond it; the backlog is dropped at twice it.
        private int DropAt => node.Options.PublishBackpressure ? 2 * node.Options.MaxDispatchBacklog : node.Options.MaxDispatchBacklog;

        /// <summary>Queues a publication; the caller hands them over one at a time, in offset order.</summary>
        public void Enqueue(Publication publication, string epoch)
        {
            var dropped = 0;
            bool schedule;
            lock (_lock)
            {
                var items = _items ??= new Queue<(Publication, string)>();
                if (items.Count >= DropAt)
                {
                    // Fan-out has fallen too far behind its publishers (without backpressure, any; with it, those this
                    // node cannot slow down). Dropping the backlog keeps memory and the subscribers' lag bounded, and it
                    // is never silent: the next publication delivered (this one) is past a gap, so each subscriber's
                    // continuity check closes it with 4004 and its client recovers from history.
                    dropped = items.Count;
                    items.Clear();
                }
                items.Enqueue((publication, epoch));
                Volatile.Write(ref _count, items.Count);
                schedule = !_running;
                _running = true;
            }
            if (dropped > 0)
            {
                node.Metrics.DispatchOverflowed();
                Log.FanOutBacklogDropped(node._logger, channel, dropped, node.Options.MaxDispatchBacklog);
            }
            if (schedule)
            {
                node.ScheduleFanOut(this);
            }
        }

        /// <summary>Completes once the backlog is under <see cref="HeraldOptions.MaxDispatchBacklog"/>, or the node stops.</summary>
        public ValueTask WaitForRoomAsync(CancellationToken cancellationToken) =>
            Count < node.Options.MaxDispatchBacklog || node.Stopping.IsCancellationRequested ? ValueTask.CompletedTask : WaitForRoomSlowAsync(cancellationToken);

        /// <summary>Drops everything queued and releases waiting publishers (shutdown).</summary>
        public void Stop()
        {
            TaskCompletionSource? room;
            lock (_lock)
            {
                _items?.Clear();
                Volatile.Write(ref _count, 0);
                room = _room;
                _room = null;
            }
            room?.TrySetResult();
        }

        /// <summary>The worker: delivers queued publications in order until the queue is empty or its turn is over.</summary>
        public void Execute()
        {
            // Connections that a push finds idle are written when the turn ends, in chunks on the thread pool
            // (DeliveryBatch): a turn that delivers several publications sends each connection one frame for all of them.
            var batch = DeliveryBatch.Begin();
            try
            {
                RunTurn();
            }
            finally
            {
                DeliveryBatch.End(batch);
            }
        }

        private void RunTurn()
        {
            for (var done = 0; done < PerTurn; done++)
            {
                (Publication Publication, string Epoch) item;
                TaskCompletionSource? room = null;
                lock (_lock)
                {
                    if (_items is null || !_items.TryDequeue(out item))
                    {
                        _running = false;
                        return;
                    }
                    Volatile.Write(ref _count, _items.Count);
                    if (_room is not null && _items.Count < node.Options.MaxDispatchBacklog)
                    {
                        room = _room;
                        _room = null;
                    }
                }
                room?.TrySetResult();
                try
                {
                    node.FanOut(entry, channel, item.Publication, item.Epoch);
                }
                catch (Exception ex)
                {
                    // A worker that died here would leave the channel's queue marked running forever.
                    Log.FanOutFailed(node._logger, channel, item.Publication.Offset, ex);
                }
            }
            node.ScheduleFanOut(this); // still running: the next turn finds the queue empty or carries on
        }

        private async ValueTask WaitForRoomSlowAsync(CancellationToken cancellationToken)
        {
            node.Metrics.PublishWaitedForFanOut();
            while (!node.Stopping.IsCancellationRequested)
            {
                Task room;
                lock (_lock)
                {
                    if (_count < node.Options.MaxDispatchBacklog)
                    {
                        return;
                    }
                    room = (_room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                }
                await room.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 107, Level = LogLevel.Warning, Message = "Fan-out of {Channel} fell {Dropped} publications behind (Herald:MaxDispatchBacklog = {Limit}); dropped them, its subscribers on this node are closed with 4004 and recover from history")]
        public static partial void FanOutBacklogDropped(ILogger logger, string channel, int dropped, int limit);

        [LoggerMessage(EventId = 108, Level = LogLevel.Error, Message = "Fan-out of {Channel} offset {Offset} failed")]
        public static partial void FanOutFailed(ILogger logger, string channel, ulong offset, Exception exception);
    }
}
