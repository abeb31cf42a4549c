using System.Buffers;
using System.Threading.Channels;
using Herald.Sessions;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// One frame of the WebSocket writer: the first queued message and whatever else is queued behind it (up to
/// <see cref="WebSocketConnection.MaxBatchBytes"/>), joined into one payload, so that one frame and one write carry them
/// all. The write loop builds it and the micro-benchmarks measure it, so what they measure is what the writer does.
/// </summary>
internal struct FrameBatch
{
    private byte[]? _rented;

    /// <summary>The frame's payload: the lone message's own shared bytes, or the joined messages in a rented buffer.</summary>
    public ReadOnlyMemory<byte> Payload { get; private set; }

    /// <summary>The bytes taken from the queue (separators not counted), for <see cref="OutboundQueue.Written"/>.</summary>
    public long Taken { get; private set; }

    /// <summary>How many pushes the frame carries; their accepted-at stamps are the first ones of the stamps array.</summary>
    public int Pushes { get; private set; }

    /// <summary>
    /// Takes <paramref name="first"/> and every message queued behind it in <paramref name="reader"/> that fits, and
    /// notes each push's accepted-at stamp in <paramref name="stamps"/> (see <see cref="DeliveryStamps"/>).
    /// </summary>
    /// <param name="reader">The connection's outbound queue.</param>
    /// <param name="first">The message already read from <paramref name="reader"/>.</param>
    /// <param name="newlines">Whether messages are separated by <c>\n</c> (<c>herald.json</c>); MessagePack values delimit themselves.</param>
    /// <param name="stamps">The writer's stamps array, rented on the first push.</param>
    public static FrameBatch Take(ChannelReader<OutboundMessage> reader, in OutboundMessage first, bool newlines, ref long[]? stamps)
    {
        var batch = new FrameBatch { Taken = first.Bytes.Length };
        var pushes = 0;
        if (first.AcceptedTimestamp != 0)
        {
            DeliveryStamps.Add(ref stamps, pushes++, first.AcceptedTimestamp);
        }
        if (!reader.TryPeek(out _))
        {
            // One message waiting (the common case when the reader keeps up): send the shared bytes as they are, with no
            // copy and no buffer of this connection's own.
            batch.Payload = first.Bytes;
            batch.Pushes = pushes;
            return batch;
        }
        // Several waiting: join them into one frame in a buffer rented for this frame only, so idle connections hold no
        // write buffer.
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(4096, first.Bytes.Length * 2));
        first.Bytes.Span.CopyTo(buffer);
        var count = first.Bytes.Length;
        var taken = batch.Taken;
        while (count < WebSocketConnection.MaxBatchBytes && reader.TryRead(out var message))
        {
            var needed = count + 1 + message.Bytes.Length;
            if (needed > buffer.Length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, buffer.Length * 2));
                buffer.AsSpan(0, count).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = larger;
            }
            if (newlines)
            {
                buffer[count++] = (byte)'\n';
            }
            message.Bytes.Span.CopyTo(buffer.AsSpan(count));
            count += message.Bytes.Length;
            taken += message.Bytes.Length;
            if (message.AcceptedTimestamp != 0)
            {
                DeliveryStamps.Add(ref stamps, pushes++, message.AcceptedTimestamp);
            }
        }
        batch._rented = buffer;
        batch.Payload = buffer.AsMemory(0, count);
        batch.Taken = taken;
        batch.Pushes = pushes;
        return batch;
    }

    /// <summary>
    /// Returns the rented buffer, once the frame has been sent. A frame whose send failed is not released: the socket may
    /// still hold its bytes, and the pool allows an array left to the GC.
    /// </summary>
    public void Release()
    {
        if (_rented is { } rented)
        {
            _rented = null;
            Payload = default;
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}
