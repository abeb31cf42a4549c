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
