using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using Herald.AspNetCore.WebSockets;
using Herald.Sessions;

namespace Herald.Integration.Tests;

/// <summary>
/// The WebSocket writer's batch on its own (the write loop and the micro-benchmarks both call it): what goes into one
/// frame, how it is separated, where it stops, and which stamps the latency metric gets.
/// </summary>
public sealed class FrameBatchTests
{
    private static OutboundQueue Queue() => new(10_000, 64L * 1024 * 1024, static () => throw new InvalidOperationException("overflow"));

    private static (FrameBatch Frame, long[]? Stamps) TakeOne(OutboundQueue queue, bool newlines)
    {
        Assert.True(queue.Reader.TryRead(out var first));
        long[]? stamps = null;
        var frame = FrameBatch.Take(queue.Reader, first, newlines, ref stamps);
        return (frame, stamps);
    }

    [Fact]
    public void LoneMessage_GoesOutAsItsOwnSharedBytes()
    {
        var queue = Queue();
        var push = Encoding.UTF8.GetBytes("""{"push":{"channel":"c","pub":{"offset":1,"data":{}}}}""");
        queue.TryEnqueue(push, acceptedTimestamp: 42);

        var (frame, stamps) = TakeOne(queue, newlines: true);

        Assert.True(MemoryMarshal.TryGetArray(frame.Payload, out var segment));
        Assert.Same(push, segment.Array);
        Assert.Equal(push.Length, frame.Payload.Length);
        Assert.Equal(push.Length, frame.Taken);
        Assert.Equal(1, frame.Pushes);
        Assert.Equal(42, stamps![0]);
        frame.Release();
        Assert.Equal(push.Length, frame.Taken);
        ArrayPool<long>.Shared.Return(stamps);
    }

    [Theory]
    [InlineData(true, "a\nbb\nccc")]
    [InlineData(false, "abbccc")]
    public void QueuedMessages_AreJoinedIntoOneFrame_WithNewlinesOnlyForJson(bool newlines, string expected)
    {
        var queue = Queue();
        queue.TryEnqueue("a"u8.ToArray(), acceptedTimestamp: 7);
        queue.TryEnqueue("bb"u8.ToArray()); // a reply: no stamp
        queue.TryEnqueue("ccc"u8.ToArray(), acceptedTimestamp: 9);

        var (frame, stamps) = TakeOne(queue, newlines);

        Assert.Equal(expected, Encoding.UTF8.GetString(frame.Payload.Span));
        Assert.Equal(6, frame.Taken); // separators are not queued bytes
        Assert.Equal(2, frame.Pushes);
        Assert.Equal([7L, 9L], stamps![..2]);
        Assert.False(queue.Reader.TryPeek(out _));
        frame.Release();
        Assert.True(frame.Payload.IsEmpty);
        ArrayPool<long>.Shared.Return(stamps);
    }

    [Fact]
    public void Batch_StopsAddingMessagesOnceItReachesTheLimit()
    {
        var queue = Queue();
        var large = new byte[(WebSocketConnection.MaxBatchBytes / 3) + 1];
        for (var i = 0; i < 4; i++)
        {
            queue.TryEnqueue(large);
        }

        var (frame, stamps) = TakeOne(queue, newlines: true);

        // Three reach past the limit (each started below it); the fourth waits for the next frame.
        Assert.Equal(3 * large.Length, frame.Taken);
        Assert.Equal((3 * large.Length) + 2, frame.Payload.Length);
        Assert.Equal(0, frame.Pushes);
        Assert.Null(stamps);
        Assert.True(queue.Reader.TryRead(out var rest));
        Assert.Same(large, MemoryMarshal.TryGetArray(rest.Bytes, out var segment) ? segment.Array : null);
        frame.Release();
    }
}
