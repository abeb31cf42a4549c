using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace Herald.Bench.Kestrel;

/// <summary>
/// The <c>kestrel-raw</c> floor: a Kestrel connection middleware that takes a connection whose first request is
/// <c>GET /ws</c>, answers the RFC 6455 upgrade by hand on <see cref="ConnectionContext.Transport"/>, then reads client
/// frames from it and writes pre-built frames into it. Kestrel's HTTP layer never sees that connection, so nothing of
/// HTTP/1.1 (connection, request, response, upgraded stream) is kept for it. Every other connection goes on to HTTP.
/// </summary>
internal static class RawWebSocket
{
    private const int MaxMessageBytes = 64 * 1024;
    private const int MaxHandshakeBytes = 8 * 1024;
    private const byte Text = 0x1;
    private const byte Close = 0x8;
    private const byte Ping = 0x9;
    private const byte Pong = 0xA;

    /// <summary>Publications leave as whole text frames, built once for every subscriber.</summary>
    public static Hub Hub { get; } = new(static payload => Frame(Text, payload));

    /// <summary>
    /// <c>--socket</c>: the 101 answer and every frame after it go straight to the connection's socket, one non-blocking
    /// send each, never through the transport's output pipe (so nothing written there can be overtaken).
    /// </summary>
    public static bool DirectSocket { get; set; }

    public static async Task RunAsync(ConnectionContext connection, ConnectionDelegate next, Hub hub)
    {
        var input = connection.Transport.Input;
        // Any HTTP request is longer than the prefix, so waiting for that many bytes never stalls one that is not ours.
        var read = await input.ReadAtLeastAsync("GET /ws?"u8.Length);
        if (!IsWebSocketRequest(read.Buffer))
        {
            // Nothing consumed or examined: Kestrel's HTTP layer reads the same bytes.
            input.AdvanceTo(read.Buffer.Start);
            await next(connection);
            return;
        }
        var socket = DirectSocket ? connection.Features.Get<IConnectionSocketFeature>()?.Socket : null;
        var subscriber = new PipeSubscriber(connection, socket);
        try
        {
            if (!await HandshakeAsync(connection, read, socket))
            {
                return;
            }
            await ReadLoopAsync(input, hub, subscriber);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // Reset or aborted (a slow subscriber is aborted): nothing to answer.
        }
        finally
        {
            Hub.Remove(subscriber);
            subscriber.Complete();
        }
    }

    private static bool IsWebSocketRequest(ReadOnlySequence<byte> buffer)
    {
        Span<byte> start = stackalloc byte[8];
        if (buffer.Length < start.Length)
        {
            return false;
        }
        buffer.Slice(0, start.Length).CopyTo(start);
        return start.SequenceEqual("GET /ws "u8) || start.SequenceEqual("GET /ws?"u8);
    }

    /// <summary>Reads the request's headers and answers 101, or 400 without a valid <c>Sec-WebSocket-Key</c>.</summary>
    private static async Task<bool> HandshakeAsync(ConnectionContext connection, ReadResult read, Socket? socket)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        string head;
        while (true)
        {
            var reader = new SequenceReader<byte>(read.Buffer);
            if (reader.TryReadTo(out ReadOnlySequence<byte> headers, "\r\n\r\n"u8, advancePastDelimiter: true))
            {
                head = Encoding.ASCII.GetString(headers);
                input.AdvanceTo(reader.Position);
                break;
            }
            if (read.IsCompleted || read.Buffer.Length > MaxHandshakeBytes)
            {
                return false;
            }
            input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
            read = await input.ReadAsync();
        }
        string? key = null;
        var upgrade = false;
        foreach (var line in head.Split("\r\n"))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }
            var name = line.AsSpan(0, colon).Trim();
            var value = line.AsSpan(colon + 1).Trim();
            if (name.Equals("Sec-WebSocket-Key", StringComparison.OrdinalIgnoreCase))
            {
                key = value.ToString();
            }
            else if (name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase))
            {
                upgrade = value.Equals("websocket", StringComparison.OrdinalIgnoreCase);
            }
        }
        if (!upgrade || key is not { Length: 24 })
        {
            await output.WriteAsync("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray());
            return false;
        }
        // RFC 6455 fixes SHA-1 for the accept header; it is a handshake checksum, not a security control.
#pragma warning disable CA5350
        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350
        var answer = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        if (socket is not null)
        {
            // Nothing goes through the transport's output from here on, so nothing written there can be overtaken.
            socket.Blocking = false;
            return socket.Send(answer, SocketFlags.None, out var error) == answer.Length && error == SocketError.Success;
        }
        await output.WriteAsync(answer);
        return true;
    }

    private static async Task ReadLoopAsync(PipeReader input, Hub hub, PipeSubscriber subscriber)
    {
        while (true)
        {
            // Idle, this read holds no buffer: Kestrel's socket transport waits for data before it allocates one.
            var read = await input.ReadAsync();
            var buffer = read.Buffer;
            var ended = false;
            while (!ended)
            {
                var status = TryReadFrame(ref buffer, out var fin, out var opcode, out var payload);
                if (status == FrameStatus.Incomplete)
                {
                    break;
                }
                ended = status switch
                {
                    FrameStatus.TooBig => subscriber.CloseWith(1009),
                    FrameStatus.Invalid => subscriber.CloseWith(1002),
                    _ => Handle(fin, opcode, payload, hub, subscriber),
                };
            }
            input.AdvanceTo(buffer.Start, buffer.End);
            if (ended || read.IsCompleted)
            {
                return;
            }
        }
    }

    /// <summary>Handles one client frame; returns whether the connection ends.</summary>
    private static bool Handle(bool fin, byte opcode, byte[] payload, Hub hub, PipeSubscriber subscriber)
    {
        switch (opcode)
        {
            case Text when fin:
                if (Wire.HandleCommands(payload, hub, subscriber) is { } reply)
                {
                    subscriber.Send(Frame(Text, reply));
                }
                return false;
            case Ping:
                subscriber.Send(Frame(Pong, payload));
                return false;
            case Pong:
                return false;
            case Close:
                // Echo the peer's status code, as RFC 6455 asks, then end.
                subscriber.Send(Frame(Close, payload.AsSpan(0, Math.Min(payload.Length, 2))));
                return true;
            default:
                // Binary and fragmented messages are not part of herald.json's client side here.
                return subscriber.CloseWith(1003);
        }
    }

    private enum FrameStatus
    {
        Incomplete,
        Complete,
        TooBig,
        Invalid,
    }

    /// <summary>Takes one whole client frame off <paramref name="buffer"/>, its payload unmasked into a new array.</summary>
    private static FrameStatus TryReadFrame(ref ReadOnlySequence<byte> buffer, out bool fin, out byte opcode, out byte[] payload)
    {
        fin = false;
        opcode = 0;
        payload = [];
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out var b0) || !reader.TryRead(out var b1))
        {
            return FrameStatus.Incomplete;
        }
        // No extension was negotiated, so RSV bits must be clear; a client must mask every frame.
        if ((b0 & 0x70) != 0 || (b1 & 0x80) == 0)
        {
            return FrameStatus.Invalid;
        }
        fin = (b0 & 0x80) != 0;
        opcode = (byte)(b0 & 0x0F);
        long length = b1 & 0x7F;
        if (length == 126)
        {
            if (!reader.TryReadBigEndian(out short length16))
            {
                return FrameStatus.Incomplete;
            }
            length = (ushort)length16;
        }
        else if (length == 127)
        {
            if (!reader.TryReadBigEndian(out length))
            {
                return FrameStatus.Incomplete;
            }
        }
        if (length is < 0 or > MaxMessageBytes)
        {
            return FrameStatus.TooBig;
        }
        Span<byte> mask = stackalloc byte[4];
        if (!reader.TryCopyTo(mask) || reader.Remaining - 4 < length)
        {
            return FrameStatus.Incomplete;
        }
        reader.Advance(4);
        payload = new byte[length];
        reader.TryCopyTo(payload);
        reader.Advance(length);
        for (var i = 0; i < payload.Length; i++)
        {
            payload[i] ^= mask[i & 3];
        }
        buffer = buffer.Slice(reader.Position);
        return FrameStatus.Complete;
    }

    /// <summary>A whole, unmasked server frame: FIN, the opcode, the length, the payload.</summary>
    private static byte[] Frame(byte opcode, ReadOnlySpan<byte> payload)
    {
        var header = payload.Length < 126 ? 2 : payload.Length <= ushort.MaxValue ? 4 : 10;
        var frame = new byte[header + payload.Length];
        frame[0] = (byte)(0x80 | opcode);
        if (header == 2)
        {
            frame[1] = (byte)payload.Length;
        }
        else if (header == 4)
        {
            frame[1] = 126;
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), (ushort)payload.Length);
        }
        else
        {
            frame[1] = 127;
            BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(2), (ulong)payload.Length);
        }
        payload.CopyTo(frame.AsSpan(header));
        return frame;
    }

    /// <summary>
    /// Writes frames straight into the transport's output pipe under a lock (a pipe has one writer at a time). The pipe's
    /// own buffer (Kestrel's 64 KiB write limit) is the only queue: a subscriber whose last flush is still waiting for
    /// room when the next frame comes is dropped, so memory stays bounded and no frame is skipped silently. With a
    /// <paramref name="socket"/> (<c>--socket</c>), each frame is one non-blocking send on it instead, and the kernel's
    /// socket buffer is the only queue: a send that cannot take the whole frame drops the subscriber.
    /// </summary>
    private sealed class PipeSubscriber(ConnectionContext connection, Socket? socket) : Subscriber
    {
        private readonly Lock _lock = new();
        private Task? _flushing;
        private bool _closed;

        /// <summary>Never pending: a frame is in the pipe, or the subscriber is dropped.</summary>
        public override ValueTask SendAsync(byte[] wire)
        {
            Send(wire);
            return default;
        }

        public void Send(byte[] frame)
        {
            lock (_lock)
            {
                if (_closed)
                {
                    return;
                }
                if (socket is not null)
                {
                    // One send, on this thread; a socket that cannot take the whole frame at once is a slow subscriber.
                    var sent = socket.Send(frame, SocketFlags.None, out var error);
                    if (error != SocketError.Success || sent != frame.Length)
                    {
                        _closed = true;
                        connection.Abort(new ConnectionAbortedException("slow subscriber: its socket buffer is full"));
                    }
                    return;
                }
                if (_flushing is { IsCompleted: false })
                {
                    _closed = true;
                    connection.Abort(new ConnectionAbortedException("slow subscriber: its output buffer is full"));
                    return;
                }
                var output = connection.Transport.Output;
                output.Write(frame);
                var flush = output.FlushAsync();
                if (flush.IsCompleted)
                {
                    flush.GetAwaiter().GetResult();
                    _flushing = null;
                }
                else
                {
                    _flushing = flush.AsTask();
                }
            }
        }

        /// <summary>Sends a close frame with <paramref name="status"/>; returns true (the connection ends).</summary>
        public bool CloseWith(ushort status)
        {
            Span<byte> code = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(code, status);
            Send(Frame(Close, code));
            return true;
        }

        /// <summary>No more frames: what is in the pipe is still sent, then Kestrel closes the connection.</summary>
        public void Complete()
        {
            lock (_lock)
            {
                _closed = true;
                connection.Transport.Output.Complete();
            }
        }
    }
}
