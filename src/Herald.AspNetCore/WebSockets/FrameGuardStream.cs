using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Unicode;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// A thin stream between the upgraded connection and .NET's WebSocket that reads the client's frame headers as
/// they pass. It exists for what the platform's WebSocket does not do (or does not do promptly):
/// it refuses a frame (or fragmented message) whose announced length exceeds the message limit as soon as the
/// header arrives, with close 1009, instead of buffering a trickle forever; it refuses an unmasked client frame as
/// soon as its header arrives, with close 1002 (the platform waits for four mask-key bytes that never come, so a
/// short unmasked frame would hang the connection); it refuses a close frame whose reason is not UTF-8 with close
/// 1007 (RFC 6455 §8.1; the platform answers 1002); and it knows when the peer's close frame has arrived, so that
/// the connection can linger until then and our own close frame is not destroyed by a TCP reset.
/// </summary>
/// <remarks>
/// Writes are serialised so that the close frame this stream injects never interleaves with a frame of the WebSocket's.
/// After refusing a frame the parser keeps following the frame structure (skipping the refused frame's payload), so
/// that <see cref="LingerAsync"/> still recognises the peer's answering close frame.
/// </remarks>
/// <param name="inner">The upgraded connection.</param>
/// <param name="maxMessageBytes">The message limit.</param>
/// <param name="owner">
/// What is aborted to end a read pending on <paramref name="inner"/> when this stream is disposed during such a read: the
/// upgraded request (an <see cref="Microsoft.AspNetCore.Http.HttpContext"/>), or for a WebSocket handed off below the
/// HTTP layer its connection (a <see cref="Microsoft.AspNetCore.Connections.ConnectionContext"/>). A token source linked
/// into every read would do the same at the price of a source and registrations that an idle connection holds for its
/// whole life (and a delegate in place of the owner, of one more object).
/// </param>
/// <param name="socket">
/// The connection's socket, when frames may be sent on it directly (plain HTTP/1.1 on Kestrel's sockets transport,
/// nothing between Kestrel and the socket); <see langword="null"/> to write through <paramref name="inner"/> only.
/// </param>
internal sealed class FrameGuardStream(Stream inner, long maxMessageBytes, object owner, Socket? socket = null) : Stream
{
    /// <summary>Where writes go: Kestrel's upgraded stream until <see cref="TrySendOnSocket"/> moves them to the socket.</summary>
    private const int OutputUndecided = 0, OutputSocket = 1, OutputKestrel = -1;

    private const int MaxControlPayload = 125;

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    // The frame headers being parsed are kept in the stream itself rather than in arrays of their own: one object less
    // each, for every connection.
    private FrameHeader _header;
    private MaskKey _maskKey;
    // Only a close frame's payload is kept (to check its reason), so the buffer waits for one.
    private byte[]? _closePayload;
    private int _headerFilled;
    private int _headerNeeded = 2;
    private long _payloadRemaining;
    private long _payloadSeen;
    private bool _inPayload;
    private bool _masked;
    private byte _opcode;
    private long _messageBytes;
    private Violation? _pending;
    private volatile bool _tripped;
    private volatile bool _peerClosed;
    private volatile bool _closeSent;
    private int _disposed;
    private int _reading;
    private int _readCount;
    private FrameHeader _outHeader;
    private int _outHeaderFilled;
    private long _outPayloadRemaining;
    // Changed only under the write lock.
    private int _output = socket is null ? OutputKestrel : OutputUndecided;
    private int _sending;

    /// <summary>A WebSocket frame header: at most 2 bytes, 8 of extended length and a 4-byte mask key.</summary>
    [System.Runtime.CompilerServices.InlineArray(14)]
    private struct FrameHeader
    {
        private byte _first;
    }

    /// <summary>A client frame's mask key.</summary>
    [System.Runtime.CompilerServices.InlineArray(4)]
    private struct MaskKey
    {
        private byte _first;
    }

    /// <summary>A frame this stream refuses: the close code and reason to send.</summary>
    private readonly record struct Violation(ushort Code, string Reason);

    /// <summary>Whether this stream refused a frame and sent a close frame (1002, 1007 or 1009) itself.</summary>
    public bool Tripped => _tripped;

    /// <summary>
    /// Whether a close frame of ours has gone out (the WebSocket's, or this stream's own). Only then is there a close
    /// frame worth lingering for; a connection aborted without one (keep-alive timeout, dead peer) can go at once.
    /// </summary>
    public bool CloseSent => _closeSent;

    /// <summary>Whether the peer's close frame has fully arrived (or the peer closed the TCP connection).</summary>
    public bool PeerClosed => _peerClosed;

    /// <summary>How many reads have brought bytes from the peer: keep-alive's proof of life, whatever frame they held.</summary>
    public int ReadCount => Volatile.Read(ref _readCount);

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty && !_tripped && _pending is null)
        {
            // A zero-byte read waits for data without holding a buffer (the WebSocket's idle wait); there is nothing
            // to inspect, and 0 here does not mean the peer closed: the next real read tells. It is handed back as it
            // is rather than awaited here, because an idle connection waits in it for good and an async method would
            // keep a state machine alive for that long. So the read is marked pending and stays marked after it
            // completes: the WebSocket always goes on to read the frame it announced, and that read clears the mark.
            Volatile.Write(ref _reading, 1);
            return inner.ReadAsync(buffer, cancellationToken);
        }
        return ReadCoreAsync(buffer, cancellationToken);
    }

    private async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (_tripped)
        {
            return 0;
        }
        if (_pending is { } pending)
        {
            await TripAsync(pending, cancellationToken);
            return 0;
        }
        int read;
        Volatile.Write(ref _reading, 1);
        try
        {
            read = await inner.ReadAsync(buffer, cancellationToken);
        }
        finally
        {
            Volatile.Write(ref _reading, 0);
        }
        if (read == 0)
        {
            _peerClosed = true;
            return 0;
        }
        Volatile.Write(ref _readCount, _readCount + 1);
        if (_output == OutputUndecided)
        {
            TrySendOnSocket();
        }
        if (Inspect(buffer.Span[..read], enforce: true, out var deliverable) is { } violation)
        {
            if (deliverable > 0)
            {
                // The frames before the refused one are whole and fine: let the WebSocket have them, refuse on the next read.
                _pending = violation;
                return deliverable;
            }
            await TripAsync(violation, cancellationToken);
            return 0; // the WebSocket sees the end of the stream and gives up; the transport lingers for the peer's close
        }
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (!_tripped)
            {
                TrackOutbound(buffer.Span);
                await SendAsync(buffer, cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Takes the write lock without waiting, for a writer that builds its own data frames (<see cref="WriteFrameAsync"/>);
    /// <see langword="false"/> while the WebSocket is writing a frame of its own.
    /// </summary>
    public bool TryEnterWrite() => _writeLock.Wait(0);

    /// <summary>Waits for the write lock; see <see cref="TryEnterWrite"/>.</summary>
    public Task EnterWriteAsync(CancellationToken cancellationToken) => _writeLock.WaitAsync(cancellationToken);

    /// <summary>Releases the write lock taken by <see cref="TryEnterWrite"/> or <see cref="EnterWriteAsync"/>.</summary>
    /// <remarks>The WebSocket disposes this stream when it aborts, possibly while a write is pending; that is not an error.</remarks>
    public void ExitWrite()
    {
        try
        {
            _writeLock.Release();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Whether a data frame may still go out: this stream has refused no frame and no close frame has been sent.</summary>
    public bool CanWriteData => !_tripped && !_closeSent;

    /// <summary>
    /// Writes one whole data frame built by the caller, who holds the write lock. It is not parsed on the way out: only
    /// the WebSocket's own frames (control frames, among them the close) go through <see cref="WriteAsync(ReadOnlyMemory{byte}, CancellationToken)"/>.
    /// </summary>
    public ValueTask WriteFrameAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken) => SendAsync(frame, cancellationToken);

    /// <summary>
    /// Moves writes to the socket, if this stream was given one and nothing has been written through Kestrel since the
    /// 101 answer. Called when the client's first bytes arrive: a client sends only after it has read the 101, so by
    /// then Kestrel has handed the 101 to the socket, and a frame sent on the socket goes out behind it.
    /// </summary>
    private void TrySendOnSocket()
    {
        if (!_writeLock.Wait(0))
        {
            return; // a write is under way (through Kestrel, so the output stays there): decided by that write
        }
        try
        {
            if (_output == OutputUndecided)
            {
                // A non-blocking send either takes the bytes into the kernel at once or says it would block; a blocking
                // one would hold the fan-out's thread on a peer that reads slowly.
                socket!.Blocking = false;
                _output = OutputSocket;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _output = OutputKestrel;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Writes bytes out, the caller holding the write lock: on the socket itself once <see cref="TrySendOnSocket"/> has
    /// moved the output there (one <c>send</c> on the caller's thread; what the kernel does not take at once is sent
    /// asynchronously, and the caller waits for it), otherwise through Kestrel's upgraded stream.
    /// </summary>
    private ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_output != OutputSocket)
        {
            _output = OutputKestrel; // written through Kestrel once: the socket is no longer known to come after it
            return inner.WriteAsync(data, cancellationToken);
        }
        var sent = socket!.Send(data.Span, SocketFlags.None, out var error);
        if (error == SocketError.Success && sent == data.Length)
        {
            return ValueTask.CompletedTask;
        }
        if (error is not (SocketError.Success or SocketError.WouldBlock))
        {
            return ValueTask.FromException(new IOException($"send failed: {error}", new SocketException((int)error)));
        }
        return SendRestAsync(data[Math.Max(sent, 0)..], cancellationToken);
    }

    private async ValueTask SendRestAsync(ReadOnlyMemory<byte> rest, CancellationToken cancellationToken)
    {
        Volatile.Write(ref _sending, 1);
        try
        {
            while (!rest.IsEmpty)
            {
                rest = rest[await socket!.SendAsync(rest, SocketFlags.None, cancellationToken)..];
            }
        }
        catch (SocketException ex)
        {
            throw new IOException(ex.Message, ex);
        }
        finally
        {
            Volatile.Write(ref _sending, 0);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) =>
        _output == OutputSocket ? Task.CompletedTask : inner.FlushAsync(cancellationToken);

    /// <summary>
    /// Reads and discards input until the peer's close frame has arrived, the peer closes, or
    /// <paramref name="timeout"/> passes. Closing a socket with unread input makes the kernel send a reset, which can
    /// destroy the close frame we just sent before the peer reads it.
    /// </summary>
    public async Task LingerAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var scratch = new byte[4096];
        try
        {
            while (!_peerClosed)
            {
                var read = await inner.ReadAsync(scratch, cts.Token);
                if (read == 0)
                {
                    _peerClosed = true;
                    break;
                }
                // Parse without limits, only to notice the peer's close frame.
                Inspect(scratch.AsSpan(0, read), enforce: false, out _);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }

    private Task TripAsync(Violation violation, CancellationToken cancellationToken)
    {
        _tripped = true;
        _pending = null;
        return SendCloseAsync(violation.Code, violation.Reason, cancellationToken);
    }

    private async Task SendCloseAsync(ushort code, string reason, CancellationToken cancellationToken)
    {
        var reasonBytes = Encoding.UTF8.GetBytes(reason);
        var frame = new byte[4 + reasonBytes.Length];
        frame[0] = 0x88; // FIN + close
        frame[1] = (byte)(2 + reasonBytes.Length);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), code);
        reasonBytes.CopyTo(frame, 4);
        if (!await _writeLock.WaitAsync(TimeSpan.FromSeconds(1), cancellationToken))
        {
            return; // a write is stuck on a peer that reads nothing; it will not read our close frame either
        }
        try
        {
            _closeSent = true;
            await SendAsync(frame, cancellationToken);
            await FlushAsync(cancellationToken);
        }
        catch (IOException)
        {
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Follows the frames the WebSocket writes (server frames are never masked) to notice our close frame.</summary>
    private void TrackOutbound(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (_outPayloadRemaining > 0)
            {
                var take = (int)Math.Min(_outPayloadRemaining, data.Length);
                _outPayloadRemaining -= take;
                data = data[take..];
                continue;
            }
            _outHeader[_outHeaderFilled++] = data[0];
            data = data[1..];
            if (_outHeaderFilled < 2)
            {
                continue;
            }
            var len7 = _outHeader[1] & 0x7F;
            var needed = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((_outHeader[1] & 0x80) != 0 ? 4 : 0);
            if (_outHeaderFilled < needed)
            {
                continue;
            }
            _outPayloadRemaining = len7 == 126 ? BinaryPrimitives.ReadUInt16BigEndian(((ReadOnlySpan<byte>)_outHeader)[2..])
                : len7 == 127 ? (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(((ReadOnlySpan<byte>)_outHeader)[2..]), long.MaxValue)
                : len7;
            if ((_outHeader[0] & 0x0F) == 0x8)
            {
                _closeSent = true;
            }
            _outHeaderFilled = 0;
        }
    }

    /// <summary>
    /// Advances the frame parser over <paramref name="data"/>. With <paramref name="enforce"/>, returns the first frame
    /// to refuse, and in <paramref name="deliverable"/> how many bytes of <paramref name="data"/> precede that frame's
    /// header (those belong to earlier frames). Parsing always continues to the end of <paramref name="data"/>.
    /// </summary>
    private Violation? Inspect(ReadOnlySpan<byte> data, bool enforce, out int deliverable)
    {
        Violation? violation = null;
        deliverable = data.Length;
        var frameStart = 0; // where the current frame's header began in data (0: in an earlier read)
        var position = 0;
        while (position < data.Length)
        {
            if (_inPayload)
            {
                var take = (int)Math.Min(_payloadRemaining, data.Length - position);
                if (_opcode == 0x8 && _masked && _payloadSeen + _payloadRemaining <= MaxControlPayload)
                {
                    for (var i = 0; i < take; i++)
                    {
                        _closePayload ??= new byte[MaxControlPayload];
                        _closePayload[_payloadSeen + i] = (byte)(data[position + i] ^ _maskKey[(int)((_payloadSeen + i) & 3)]);
                    }
                }
                _payloadSeen += take;
                _payloadRemaining -= take;
                position += take;
                if (_payloadRemaining == 0 && EndFrame() is { } refused && enforce && violation is null)
                {
                    violation = refused;
                    deliverable = frameStart;
                }
                continue;
            }
            if (_headerFilled == 0)
            {
                frameStart = position;
            }
            _header[_headerFilled++] = data[position++];
            if (_headerFilled == 2)
            {
                var masked = (_header[1] & 0x80) != 0;
                var len7 = _header[1] & 0x7F;
                _headerNeeded = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
            }
            if (_headerFilled < _headerNeeded)
            {
                continue;
            }
            _opcode = (byte)(_header[0] & 0x0F);
            _masked = (_header[1] & 0x80) != 0;
            if (_masked)
            {
                ((ReadOnlySpan<byte>)_header).Slice(_headerNeeded - 4, 4).CopyTo(_maskKey);
            }
            var len = (long)(_header[1] & 0x7F);
            if (len == 126)
            {
                len = BinaryPrimitives.ReadUInt16BigEndian(((ReadOnlySpan<byte>)_header)[2..]);
            }
            else if (len == 127)
            {
                var wide = BinaryPrimitives.ReadUInt64BigEndian(((ReadOnlySpan<byte>)_header)[2..]);
                len = wide > long.MaxValue ? long.MaxValue : (long)wide;
            }
            _headerFilled = 0;
            _headerNeeded = 2;
            if (_opcode is 0x0 or 0x1 or 0x2)
            {
                _messageBytes = _opcode == 0x0 ? _messageBytes + len : len;
            }
            if (enforce && violation is null)
            {
                if (!_masked)
                {
                    violation = new Violation(1002, "client frames must be masked");
                    deliverable = frameStart;
                }
                else if (_opcode is 0x0 or 0x1 or 0x2 && (len > maxMessageBytes || _messageBytes > maxMessageBytes))
                {
                    violation = new Violation(1009, $"message larger than {maxMessageBytes} bytes");
                    deliverable = frameStart;
                }
            }
            // The payload is skipped even when the frame is refused, so that the frames after it still parse.
            _payloadRemaining = len;
            _payloadSeen = 0;
            _inPayload = true;
            if (len == 0 && EndFrame() is { } refusedEmpty && enforce && violation is null)
            {
                violation = refusedEmpty;
                deliverable = frameStart;
            }
        }
        return violation;
    }

    /// <summary>Ends the current frame; returns a violation when it was a close frame whose reason is not UTF-8.</summary>
    private Violation? EndFrame()
    {
        _inPayload = false;
        if (_opcode != 0x8)
        {
            return null;
        }
        _peerClosed = true;
        // Shorter or longer close payloads are the WebSocket's to refuse (1002); here only the reason's encoding is checked.
        if (_masked && _payloadSeen is > 2 and <= MaxControlPayload && _closePayload is not null && !Utf8.IsValid(_closePayload.AsSpan(2, (int)_payloadSeen - 2)))
        {
            return new Violation(1007, "close reason is not valid UTF-8");
        }
        return null;
    }

    public override void Flush()
    {
        if (_output != OutputSocket)
        {
            inner.Flush();
        }
    }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        // The upgraded stream belongs to Kestrel, which closes it when the request ends. But a read pending on it
        // must end now: the WebSocket disposes its stream when it aborts (for example when the peer stops answering
        // keep-alive pings), and a read that waits for a dead peer would keep the connection alive forever.
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            if (Volatile.Read(ref _reading) != 0 || Volatile.Read(ref _sending) != 0)
            {
                switch (owner)
                {
                    case Microsoft.AspNetCore.Http.HttpContext request:
                        request.Abort();
                        break;
                    case Microsoft.AspNetCore.Connections.ConnectionContext connection:
                        connection.Abort();
                        break;
                }
            }
            _writeLock.Dispose();
        }
        base.Dispose(disposing);
    }
}
