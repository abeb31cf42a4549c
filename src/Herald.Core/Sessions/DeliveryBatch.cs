using System.Buffers;

namespace Herald.Sessions;

/// <summary>A connection writer that a fan-out may hold back until it has queued to every subscriber.</summary>
internal interface IDeferredWriter
{
    /// <summary>Writes what the connection has queued; called once for each time it was added to a batch.</summary>
    void WriteDeferred();

    /// <summary>
    /// Prefetches what <see cref="WriteDeferred"/> will read first, from fields of this object only (which the batch
    /// prefetched earlier): called a couple of writers ahead so that the cold loads of many connections overlap.
    /// </summary>
    void PrefetchState();
}

/// <summary>
/// The writes one fan-out leaves to do. While a fan-out runs on a thread, a connection that a push finds idle joins
/// the batch instead of writing on the spot; when the fan-out ends, the batch is handed to the thread pool in chunks
/// of <see cref="ChunkSize"/> connections. So a publication to N subscribers costs N / <see cref="ChunkSize"/>
/// thread-pool work items rather than one per subscriber, the chunks run on every core, and pushes that arrive
/// while a connection waits in a chunk go out in the same frame.
/// </summary>
internal sealed class DeliveryBatch
{
    /// <summary>Connections per work item: enough to make the hop negligible, few enough to use both cores at 1,000 subscribers.</summary>
    internal const int ChunkSize = 128;

    [ThreadStatic]
    private static DeliveryBatch? t_current;

    // A batch holds nothing once flushed, so each thread keeps one to reuse: a fan-out allocates no batch of its own.
    [ThreadStatic]
    private static DeliveryBatch? t_spare;

    private Chunk? _chunk;

    /// <summary>The batch of the fan-out running on this thread, or <see langword="null"/> outside a fan-out.</summary>
    public static DeliveryBatch? Current => t_current;

    /// <summary>Starts collecting this thread's deferred writes, until <see cref="End"/> with the scope returned.</summary>
    public static Scope Begin()
    {
        var batch = t_spare ?? new DeliveryBatch();
        t_spare = null;
        var outer = t_current;
        t_current = batch;
        return new Scope(batch, outer);
    }

    /// <summary>Hands what was collected to the thread pool and restores the batch that was current before.</summary>
    public static void End(Scope scope)
    {
        t_current = scope.Outer;
        scope.Batch.Flush();
        t_spare = scope.Batch;
    }

    /// <summary>A batch begun on this thread, and the one it replaced.</summary>
    internal readonly record struct Scope(DeliveryBatch Batch, DeliveryBatch? Outer);

    /// <summary>Adds a connection that has queued a message and whose writer this batch now owns.</summary>
    public void Add(IDeferredWriter writer)
    {
        var chunk = _chunk ??= new Chunk();
        chunk.Writers[chunk.Count++] = writer;
        if (chunk.Count == ChunkSize)
        {
            _chunk = null;
            ChunkRunner.Schedule(chunk);
        }
    }

    private void Flush()
    {
        if (_chunk is { } chunk)
        {
            _chunk = null;
            ChunkRunner.Schedule(chunk);
        }
    }

    /// <summary>
    /// Runs chunks with at most one work item per core in the thread pool's queue at a time, each running one chunk
    /// and then queuing itself again behind whatever arrived meanwhile. Queuing every chunk of a large fan-out at once
    /// would put a publish request (or a poll, a command) behind all of them: at 10,000 subscribers, 80 chunks per
    /// publication. This way other work waits for at most one chunk per core, and the fan-out still uses every core.
    /// </summary>
    private sealed class ChunkRunner : IThreadPoolWorkItem
    {
        private static readonly System.Collections.Concurrent.ConcurrentQueue<Chunk> Pending = new();
        private static readonly ChunkRunner Runner = new();
        private static int s_running;

        public static void Schedule(Chunk chunk)
        {
            Pending.Enqueue(chunk);
            TryStartRunner();
        }

        private static void TryStartRunner()
        {
            var running = Volatile.Read(ref s_running);
            while (running < Environment.ProcessorCount)
            {
                var seen = Interlocked.CompareExchange(ref s_running, running + 1, running);
                if (seen == running)
                {
                    ThreadPool.UnsafeQueueUserWorkItem(Runner, preferLocal: false);
                    return;
                }
                running = seen;
            }
        }

        public void Execute()
        {
            if (Pending.TryDequeue(out var chunk))
            {
                chunk.Execute();
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false); // behind what arrived meanwhile
                return;
            }
            Interlocked.Decrement(ref s_running);
            // A chunk queued between the failed dequeue and the decrement saw every runner busy and started none.
            if (!Pending.IsEmpty)
            {
                TryStartRunner();
            }
        }
    }

    private sealed class Chunk
    {
        public readonly IDeferredWriter[] Writers = ArrayPool<IDeferredWriter>.Shared.Rent(ChunkSize);
        public int Count;

        public void Execute()
        {
            var writers = Writers;
            var count = Count;
            for (var i = 0; i < count; i++)
            {
                // Each connection is cold at a low rate: its object CachePrefetch.Ahead ahead, then what it points to half as far (see CachePrefetch).
                if (i + CachePrefetch.Ahead < count)
                {
                    CachePrefetch.Object(writers[i + CachePrefetch.Ahead]);
                }
                if (i + (CachePrefetch.Ahead / 2) < count)
                {
                    writers[i + (CachePrefetch.Ahead / 2)].PrefetchState();
                }
                writers[i].WriteDeferred();
            }
            ArrayPool<IDeferredWriter>.Shared.Return(Writers, clearArray: true);
        }
    }
}
