using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Herald.AspNetCore.WebSockets;
using Herald.Sessions;

namespace Herald.Integration.Tests;

/// <summary>
/// The WebSocket writer's frame on its own (the writer and the micro-benchmarks both build it with
/// <see cref="FrameBatch"/>): its header (RFC 6455 §5.2), what goes into one frame, how it is separated, where it
/// stops, and which stamps the latency metric gets.
/// </summary>
public sealed class FrameBatchTests
{
    private static OutboundQueue Queue() => new(10_000, 64L * 1024 * 1024, static () => throw new InvalidOperationException("overflow"));

    private static (FrameBatch Frame, long[]? Stamps) TakeOne(OutboundQueue queue, bool text)
    {
        Assert.True(queue.Reader.TryRead(out var first));
        long[]? stamps = null;
        var frame = FrameBatch.Take(queue.Reader, first, text, ref stamps);
        return (frame, stamps);
    }

    /// <summary>Reads a server frame's header: FIN + opcode byte, then the payload that follows it.</summary>
    private static (byte First, byte[] Payload) Parse(ReadOnlySpan<byte> frame)
    {
        Assert.Equal(0, frame[1] & 0x80); // a server never masks
        var len7 = frame[1] & 0x7F;
        var (length, start) = len7 switch
        {
            126 => ((long)BinaryPrimitives.ReadUInt16BigEndian(frame[2..]), 4),
            127 => ((long)BinaryPrimitives.ReadUInt64BigEndian(frame[2..]), 10),
            _ => (len7, 2),
        };
        Assert.Equal(frame.Length - start, length);
        return (frame[0], frame[start..].ToArray());
    }

    [Theory]
    [InlineData(true, 0x81)]
    [InlineData(false, 0x82)]
    public void LoneMessage_IsOneFinalFrame_TextForJsonBinaryForMsgPack(bool text, byte first)
    {
        var queue = Queue();
        var push = Encoding.UTF8.GetBytes("""{"push":{"channel":"c","pub":{"offset":1,"data":{}}}}""");
        queue.TryEnqueue(push, acceptedTimestamp: 42);

        var (frame, stamps) = TakeOne(queue, text);

        var (header, payload) = Parse(frame.Frame.Span);
        Assert.Equal(first, header);
        Assert.Equal(push, payload);
        Assert.Equal(push.Length, frame.PayloadLength);
        Assert.Equal(push.Length, frame.Taken);
        Assert.Equal(1, frame.Pushes);
        Assert.Equal(42, stamps![0]);
        frame.Release();
        Assert.True(frame.Frame.IsEmpty);
        ArrayPool<long>.Shared.Return(stamps);
    }

    [Theory]
    [InlineData(125, 2)]
    [InlineData(126, 4)]
    [InlineData(65535, 4)]
    [InlineData(65536, 10)]
    public void Header_UsesTheShortestLengthEncoding(int size, int headerSize)
    {
        var queue = Queue();
        queue.TryEnqueue(new byte[size]);

        var (frame, _) = TakeOne(queue, text: false);

        Assert.Equal(size + headerSize, frame.Frame.Length);
        Assert.Equal(new byte[size], Parse(frame.Frame.Span).Payload);
        frame.Release();
    }

    [Theory]
    [InlineData(true, "a\nbb\nccc")]
    [InlineData(false, "abbccc")]
    public void QueuedMessages_AreJoinedIntoOneFrame_WithNewlinesOnlyForJson(bool text, string expected)
    {
        var queue = Queue();
        queue.TryEnqueue("a"u8.ToArray(), acceptedTimestamp: 7);
        queue.TryEnqueue("bb"u8.ToArray()); // a reply: no stamp
        queue.TryEnqueue("ccc"u8.ToArray(), acceptedTimestamp: 9);

        var (frame, stamps) = TakeOne(queue, text);

        Assert.Equal(expected, Encoding.UTF8.GetString(Parse(frame.Frame.Span).Payload));
        Assert.Equal(6, frame.Taken); // separators are not queued bytes
        Assert.Equal(2, frame.Pushes);
        Assert.Equal([7L, 9L], stamps![..2]);
        Assert.False(queue.Reader.TryPeek(out _));
        frame.Release();
        Assert.True(frame.Frame.IsEmpty);
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

        var (frame, stamps) = TakeOne(queue, text: true);

        // Three reach past the limit (each started below it); the fourth waits for the next frame.
        Assert.Equal(3 * large.Length, frame.Taken);
        Assert.Equal((3 * large.Length) + 2, frame.PayloadLength);
        Assert.Equal((3 * large.Length) + 2, Parse(frame.Frame.Span).Payload.Length);
        Assert.Equal(0, frame.Pushes);
        Assert.Null(stamps);
        Assert.True(queue.Reader.TryRead(out var rest));
        Assert.Same(large, MemoryMarshal.TryGetArray(rest.Bytes, out var segment) ? segment.Array : null);
        frame.Release();
    }
}
