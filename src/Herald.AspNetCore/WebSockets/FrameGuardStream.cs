using System.Buffers.Binary;
using System.Text;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// A thin stream between the upgraded connection and .NET's WebSocket that reads the client's frame headers as
/// they pass. It exists for two things the platform's WebSocket does not do:
/// it refuses a frame (or fragmented message) whose announced length exceeds the message limit as soon as the
/// header arrives, with close 1009, instead of buffering a trickle forever; and it knows when the peer's close
/// frame has arrived, so that the connection can linger until then and our own close frame is not destroyed by a
/// TCP reset.
/// </summary>
/// <remarks>Writes are serialised so that the close frame this stream injects never interleaves with a frame of the WebSocket's.</remarks>
internal sealed class FrameGuardStream(Stream inner, long maxMessageBytes) : Stream
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly byte[] _header = new byte[14];
    private int _headerFilled;
    private int _headerNeeded = 2;
    private long _payloadRemaining;
    private bool _inPayload;
    private byte _opcode;
    private long _messageBytes;
    private volatile bool _tripped;
    private volatile bool _peerClosed;

    /// <summary>Whether this stream refused an oversized message and sent close 1009 itself.</summary>
    public bool Tripped => _tripped;

    /// <summary>Whether the peer's close frame has fully arrived (or the peer closed the TCP connection).</summary>
    public bool PeerClosed => _peerClosed;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_tripped)
        {
            return 0;
        }
        var read = await inner.ReadAsync(buffer, cancellationToken);
        if (read == 0)
        {
            _peerClosed = true;
            return 0;
        }
        if (!Inspect(buffer.Span[..read]))
        {
            _tripped = true;
            await SendCloseAsync(1009, $"message larger than {maxMessageBytes} bytes", cancellationToken);
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
                await inner.WriteAsync(buffer, cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

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
                Inspect(scratch.AsSpan(0, read), enforceLimit: false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
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
            await inner.WriteAsync(frame, cancellationToken);
            await inner.FlushAsync(cancellationToken);
        }
        catch (IOException)
        {
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Advances the frame parser over <paramref name="data"/>; returns false when a message is too large.</summary>
    private bool Inspect(ReadOnlySpan<byte> data, bool enforceLimit = true)
    {
        while (!data.IsEmpty)
        {
            if (_inPayload)
            {
                var take = (int)Math.Min(_payloadRemaining, data.Length);
                _payloadRemaining -= take;
                data = data[take..];
                if (_payloadRemaining == 0)
                {
                    EndFrame();
                }
                continue;
            }
            _header[_headerFilled++] = data[0];
            data = data[1..];
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
            var len = (long)(_header[1] & 0x7F);
            if (len == 126)
            {
                len = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2));
            }
            else if (len == 127)
            {
                var wide = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2));
                len = wide > long.MaxValue ? long.MaxValue : (long)wide;
            }
            _headerFilled = 0;
            _headerNeeded = 2;
            if (_opcode is 0x0 or 0x1 or 0x2)
            {
                _messageBytes = _opcode == 0x0 ? _messageBytes + len : len;
                if (enforceLimit && (len > maxMessageBytes || _messageBytes > maxMessageBytes))
                {
                    return false;
                }
            }
            _payloadRemaining = len;
            _inPayload = true;
            if (len == 0)
            {
                EndFrame();
            }
        }
        return true;
    }

    private void EndFrame()
    {
        _inPayload = false;
        if (_opcode == 0x8)
        {
            _peerClosed = true;
        }
    }

    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        // The upgraded stream belongs to Kestrel, which closes it when the request ends.
        if (disposing)
        {
            _writeLock.Dispose();
        }
        base.Dispose(disposing);
    }
}
