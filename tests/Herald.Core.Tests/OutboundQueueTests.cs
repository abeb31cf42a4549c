using Herald.Sessions;

namespace Herald.Core.Tests;

public sealed class OutboundQueueTests
{
    [Fact]
    public void PassingTheCountBound_TripsOnce_AndDropsWhatWasQueued()
    {
        var trips = 0;
        var queue = new OutboundQueue(maxMessages: 3, maxBytes: 1000, () => trips++);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(queue.TryEnqueue(new byte[10]));
        }
        Assert.Equal(30, queue.QueuedBytes);
        Assert.False(queue.TryEnqueue(new byte[10]));
        Assert.False(queue.TryEnqueue(new byte[10]));
        Assert.Equal(1, trips);
        Assert.True(queue.Tripped);
        Assert.Equal(0, queue.QueuedBytes);
        Assert.False(queue.Reader.TryRead(out _));
    }

    [Fact]
    public void PassingTheByteBound_Trips()
    {
        var trips = 0;
        var queue = new OutboundQueue(maxMessages: 100, maxBytes: 25, () => trips++);
        Assert.True(queue.TryEnqueue(new byte[20]));
        Assert.False(queue.TryEnqueue(new byte[10]));
        Assert.Equal(1, trips);
    }

    [Fact]
    public void WrittenBytes_FreeRoom()
    {
        var queue = new OutboundQueue(maxMessages: 100, maxBytes: 25, () => Assert.Fail("must not trip"));
        Assert.True(queue.TryEnqueue(new byte[20]));
        Assert.True(queue.Reader.TryRead(out var message));
        queue.Written(message.Bytes.Length);
        Assert.True(queue.TryEnqueue(new byte[20]));
    }

    [Fact]
    public void CompletedQueue_RefusesWithoutTripping()
    {
        var queue = new OutboundQueue(10, 1000, () => Assert.Fail("must not trip"));
        queue.Complete();
        Assert.False(queue.TryEnqueue(new byte[1]));
    }

    [Fact]
    public async Task WaitForRoom_WaitsWhileMoreThanHalfFull_AndEndsWhenTheWriterHasWrittenEnough()
    {
        var queue = new OutboundQueue(maxMessages: 4, maxBytes: 1000, () => Assert.Fail("must not trip"));
        Assert.True(queue.WaitForRoomAsync(CancellationToken.None).IsCompleted);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(queue.TryEnqueue(new byte[10]));
        }
        var waiting = queue.WaitForRoomAsync(CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        Assert.True(queue.Reader.TryRead(out var taken));
        queue.Written(taken.Bytes.Length); // 2 of 4 left: at most half full
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task WaitForRoom_ByteBound_AndEndsWhenTheQueueIsDiscarded()
    {
        var queue = new OutboundQueue(maxMessages: 100, maxBytes: 100, () => { });
        Assert.True(queue.TryEnqueue(new byte[60]));
        var waiting = queue.WaitForRoomAsync(CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        queue.Discard();
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
    }
}

public sealed class OutboundQueueReaderTests
{
    private static byte[] Message(byte tag) => [tag];

    [Fact]
    public async Task WaitToRead_OnAnEmptyQueue_WaitsUntilTheFirstMessage()
    {
        var queue = new OutboundQueue(10, 1000, () => Assert.Fail("must not trip"));
        var waiting = queue.Reader.WaitToReadAsync().AsTask();
        Assert.False(waiting.IsCompleted);
        Assert.True(queue.TryEnqueue(Message(1)));
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(queue.Reader.TryRead(out var read));
        Assert.Equal(1, read.Bytes.Span[0]);
    }

    [Fact]
    public async Task WaitToRead_WhenCompletedAndDrained_AnswersFalse_AfterTheQueuedMessagesAreRead()
    {
        var queue = new OutboundQueue(10, 1000, () => Assert.Fail("must not trip"));
        var waiting = queue.Reader.WaitToReadAsync().AsTask();
        queue.Complete();
        Assert.False(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));

        var draining = new OutboundQueue(10, 1000, () => Assert.Fail("must not trip"));
        Assert.True(draining.TryEnqueue(Message(1)));
        draining.Complete();
        Assert.False(draining.TryEnqueue(Message(2)));
        Assert.True(await draining.Reader.WaitToReadAsync());
        Assert.True(draining.Reader.TryRead(out _));
        Assert.False(await draining.Reader.WaitToReadAsync());
        Assert.True(draining.Reader.Completion.IsCompleted);
    }

    [Fact]
    public async Task Discard_WakesAWaitingReader_AndFreesTheQueuedBytes()
    {
        var queue = new OutboundQueue(10, 1000, () => Assert.Fail("must not trip"));
        Assert.True(queue.TryEnqueue(new byte[7]));
        Assert.True(queue.TryEnqueue(new byte[5]));
        Assert.True(queue.Reader.TryRead(out _));
        queue.Written(7);
        Assert.True(queue.Reader.TryRead(out _));
        var waiting = queue.Reader.WaitToReadAsync().AsTask();
        Assert.True(queue.TryEnqueue(new byte[9]));
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        queue.Discard();
        Assert.Equal(5, queue.QueuedBytes); // what was taken and not yet written stays counted until Written
        Assert.False(queue.Reader.TryRead(out _));
        Assert.False(await queue.Reader.WaitToReadAsync());
    }

    [Fact]
    public async Task WaitToRead_WithACancelledToken_Throws_AndTheNextWaitStillWorks()
    {
        var queue = new OutboundQueue(10, 1000, () => Assert.Fail("must not trip"));
        using var cancel = new CancellationTokenSource();
        var waiting = queue.Reader.WaitToReadAsync(cancel.Token).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        var next = queue.Reader.WaitToReadAsync().AsTask();
        Assert.True(queue.TryEnqueue(Message(3)));
        Assert.True(await next.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void Messages_KeepTheirOrder_ThroughTheSlotAndAGrowingRing()
    {
        var queue = new OutboundQueue(100, 10_000, () => Assert.Fail("must not trip"));
        byte next = 0, expected = 0;
        // Interleaved bursts: the first message of an empty queue takes the slot, the rest the ring (which grows past
        // its first size and wraps around).
        foreach (var burst in new[] { 1, 3, 9, 2, 40, 1, 17 })
        {
            for (var i = 0; i < burst; i++)
            {
                Assert.True(queue.TryEnqueue(Message(next++)));
            }
            Assert.Equal(next - expected, queue.Reader.Count);
            Assert.True(queue.Reader.TryPeek(out var peeked));
            Assert.Equal(expected, peeked.Bytes.Span[0]);
            for (var i = 0; i < burst - burst / 2; i++)
            {
                Assert.True(queue.Reader.TryRead(out var read));
                Assert.Equal(expected++, read.Bytes.Span[0]);
            }
        }
        while (queue.Reader.TryRead(out var read))
        {
            Assert.Equal(expected++, read.Bytes.Span[0]);
        }
        Assert.Equal(next, expected);
    }

    [Fact]
    public async Task ConcurrentProducers_EveryMessageIsReadOnce_InEachProducersOrder()
    {
        const int producers = 4, each = 20_000;
        var queue = new OutboundQueue(producers * each, long.MaxValue, () => Assert.Fail("must not trip"));
        var last = new int[producers];
        Array.Fill(last, -1);
        var read = 0;
        var reader = Task.Run(async () =>
        {
            while (read < producers * each && await queue.Reader.WaitToReadAsync())
            {
                while (queue.Reader.TryRead(out var message))
                {
                    var producer = message.Bytes.Span[0];
                    var sequence = BitConverter.ToInt32(message.Bytes.Span[1..]);
                    Assert.Equal(last[producer] + 1, sequence);
                    last[producer] = sequence;
                    read++;
                }
            }
        });
        await Task.WhenAll(Enumerable.Range(0, producers).Select(p => Task.Run(() =>
        {
            for (var i = 0; i < each; i++)
            {
                var bytes = new byte[5];
                bytes[0] = (byte)p;
                BitConverter.TryWriteBytes(bytes.AsSpan(1), i);
                Assert.True(queue.TryEnqueue(bytes));
                if (i % 8 == 0)
                {
                    Thread.Yield(); // so that the queue empties often and the reader waits often: the wake-up races
                }
            }
        })));
        await reader.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(last, l => Assert.Equal(each - 1, l));
    }
    [Fact]
    public void ABurstAfterTheFirst_AllocatesNoRing_AndKeepsOrder()
    {
        // A connection that falls behind at every fan-out takes its burst ring from the pool and gets its own small
        // ring back when it drains: after the first burst, queuing and draining 256 messages allocates nothing.
        var queue = new OutboundQueue(maxMessages: 10_000, maxBytes: 1 << 20, () => Assert.Fail("must not trip"));
        var message = new byte[10];
        // Counted, not asserted, inside the burst: xunit's Assert.Equal allocates a comparer per call.
        int Burst()
        {
            var wrong = 0;
            for (var i = 0; i < 256; i++)
            {
                wrong += queue.TryEnqueue(message, acceptedTimestamp: i + 1) ? 0 : 1;
            }
            for (var i = 0; i < 256; i++)
            {
                wrong += queue.Reader.TryRead(out var taken) && taken.AcceptedTimestamp == i + 1 ? 0 : 1;
                queue.Written(taken.Bytes.Length);
            }
            return wrong + (queue.Reader.TryRead(out _) ? 1 : 0);
        }
        Assert.Equal(0, Burst());
        Assert.Equal(0, Burst());
        var before = GC.GetAllocatedBytesForCurrentThread();
        var wrongInThird = Burst();
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, wrongInThird);
        Assert.Equal(0, allocated);
    }
}
