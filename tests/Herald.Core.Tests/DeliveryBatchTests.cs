using Herald.Sessions;

namespace Herald.Core.Tests;

/// <summary>The fan-out's batch of deferred connection writes (<see cref="DeliveryBatch"/>).</summary>
public sealed class DeliveryBatchTests
{
    private sealed class CountingWriter(CountdownEvent done) : IDeferredWriter
    {
        public int Writes;
        public int Thread;
        public int Prefetches;
        public bool PrefetchedBeforeWrite;

        public void WriteDeferred()
        {
            PrefetchedBeforeWrite = Volatile.Read(ref Prefetches) > 0;
            Interlocked.Increment(ref Writes);
            Thread = Environment.CurrentManagedThreadId;
            done.Signal();
        }

        public void PrefetchState() => Interlocked.Increment(ref Prefetches);
    }

    [Fact]
    public void WritesAreDeferredUntilTheBatchEnds_ThenEachRunsOnce_OffTheFanOutThread()
    {
        const int Writers = (DeliveryBatch.ChunkSize * 3) + 5; // three full chunks and a partial one
        using var done = new CountdownEvent(Writers);
        var writers = Enumerable.Range(0, Writers).Select(_ => new CountingWriter(done)).ToArray();

        Assert.Null(DeliveryBatch.Current);
        var scope = DeliveryBatch.Begin();
        Assert.Same(scope.Batch, DeliveryBatch.Current);
        foreach (var writer in writers)
        {
            DeliveryBatch.Current!.Add(writer);
        }
        // Full chunks may already be running; the partial last chunk waits for the end of the fan-out.
        Assert.True(writers[^1].Writes == 0);
        DeliveryBatch.End(scope);
        Assert.Null(DeliveryBatch.Current);

        Assert.True(done.Wait(TimeSpan.FromSeconds(10)), $"{done.CurrentCount} writers never ran");
        Assert.All(writers, w => Assert.Equal(1, w.Writes));
        Assert.All(writers, w => Assert.NotEqual(Environment.CurrentManagedThreadId, w.Thread));
        // Each writer but the first two of its chunk is asked to prefetch its state once, before it is written.
        const int Chunks = 4;
        Assert.Equal(Writers - (2 * Chunks), writers.Count(w => w.PrefetchedBeforeWrite));
        Assert.All(writers, w => Assert.InRange(w.Prefetches, 0, 1));
    }

    [Fact]
    public void NestedBatch_RestoresTheOuterOne()
    {
        var outer = DeliveryBatch.Begin();
        var inner = DeliveryBatch.Begin();
        Assert.NotSame(outer.Batch, inner.Batch);
        Assert.Same(inner.Batch, DeliveryBatch.Current);
        DeliveryBatch.End(inner);
        Assert.Same(outer.Batch, DeliveryBatch.Current);
        DeliveryBatch.End(outer);
        Assert.Null(DeliveryBatch.Current);
    }
}
