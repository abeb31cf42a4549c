using System.Buffers;
using System.Buffers.Binary;
using System.Threading.Channels;
using Herald.Sessions;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// One frame of the WebSocket writer: the first queued message and whatever else is queued behind it (up to
/// <see cref="WebSocketConnection.MaxBatchBytes"/>), joined into one payload behind the frame's header, so that one
/// frame and one write carry them all. The writer builds it and the micro-benchmarks measure it, so what they measure
/// is what the writer does.
/// </summary>
/// <remarks>
/// The frame is built here rather than by the platform's WebSocket, whose send path (a copy into its own buffer, a
/// lock, an async state machine per send, and our stream's outbound parsing) costs more than the frame itself. The
/// buffer is rented for the frame only (Kestrel copies it into the connection's output at once), so an idle connection
/// holds none.
/// </remarks>
internal struct FrameBatch
{
    /// <summary>The longest header of an unmasked server frame: 2 bytes, and 8 of extended length.</summary>
    private const int MaxHeader = 10;

    private byte[]? _rented;

    /// <summary>The whole frame: header and payload.</summary>
    public ReadOnlyMemory<byte> Frame { get; private set; }

    /// <summary>The payload's length (the frame without its header).</summary>
    public int PayloadLength { get; private set; }

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
    /// <param name="text">
    /// A text frame of JSON lines separated by <c>\n</c> (<c>herald.json</c>); otherwise a binary frame of MessagePack
    /// values, which delimit themselves (<c>herald.msgpack</c>).
    /// </param>
    /// <param name="stamps">The writer's stamps array, rented on the first push.</param>
    public static FrameBatch Take(ChannelReader<OutboundMessage> reader, in OutboundMessage first, bool text, ref long[]? stamps)
    {
        var batch = new FrameBatch();
        var pushes = 0;
        if (!reader.TryPeek(out _))
        {
            // One message waiting (the common case when the reader keeps up).
            var buffer = ArrayPool<byte>.Shared.Rent(MaxHeader + first.Bytes.Length);
            var start = WriteHeader(buffer, text, first.Bytes.Length);
            first.Bytes.Span.CopyTo(buffer.AsSpan(start));
            if (first.AcceptedTimestamp != 0)
            {
                DeliveryStamps.Add(ref stamps, pushes++, first.AcceptedTimestamp);
            }
            batch._rented = buffer;
            batch.Frame = buffer.AsMemory(0, start + first.Bytes.Length);
            batch.PayloadLength = first.Bytes.Length;
            batch.Taken = first.Bytes.Length;
            batch.Pushes = pushes;
            return batch;
        }
        // Several waiting: the header needs the payload's length, so the payload is joined after room for the longest
        // header, and the header written right in front of it.
        var joined = ArrayPool<byte>.Shared.Rent(Math.Max(4096, MaxHeader + (first.Bytes.Length * 2)));
        first.Bytes.Span.CopyTo(joined.AsSpan(MaxHeader));
        var count = first.Bytes.Length;
        long taken = first.Bytes.Length;
        if (first.AcceptedTimestamp != 0)
        {
            DeliveryStamps.Add(ref stamps, pushes++, first.AcceptedTimestamp);
        }
        while (count < WebSocketConnection.MaxBatchBytes && reader.TryRead(out var message))
        {
            var needed = MaxHeader + count + 1 + message.Bytes.Length;
            if (needed > joined.Length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, joined.Length * 2));
                joined.AsSpan(0, MaxHeader + count).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(joined);
                joined = larger;
            }
            if (text)
            {
                joined[MaxHeader + count++] = (byte)'\n';
            }
            message.Bytes.Span.CopyTo(joined.AsSpan(MaxHeader + count));
            count += message.Bytes.Length;
            taken += message.Bytes.Length;
            if (message.AcceptedTimestamp != 0)
            {
                DeliveryStamps.Add(ref stamps, pushes++, message.AcceptedTimestamp);
            }
        }
        var headerSize = HeaderSize(count);
        WriteHeader(joined.AsSpan(MaxHeader - headerSize), text, count);
        batch._rented = joined;
        batch.Frame = joined.AsMemory(MaxHeader - headerSize, headerSize + count);
        batch.PayloadLength = count;
        batch.Taken = taken;
        batch.Pushes = pushes;
        return batch;
    }

    /// <summary>Returns the rented buffer, once the frame has been written.</summary>
    public void Release()
    {
        if (_rented is { } rented)
        {
            _rented = null;
            Frame = default;
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static int HeaderSize(long length) => length < 126 ? 2 : length <= ushort.MaxValue ? 4 : 10;

    /// <summary>Writes an unmasked server frame's header (RFC 6455 §5.2): FIN, the opcode, the payload length; returns its size.</summary>
    private static int WriteHeader(Span<byte> header, bool text, long length)
    {
        header[0] = (byte)(0x80 | (text ? 0x1 : 0x2));
        if (length < 126)
        {
            header[1] = (byte)length;
            return 2;
        }
        if (length <= ushort.MaxValue)
        {
            header[1] = 126;
            BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)length);
            return 4;
        }
        header[1] = 127;
        BinaryPrimitives.WriteUInt64BigEndian(header[2..], (ulong)length);
        return 10;
    }
}
