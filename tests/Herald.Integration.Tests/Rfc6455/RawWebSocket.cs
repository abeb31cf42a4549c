using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>RFC 6455 opcodes.</summary>
public static class Op
{
    public const byte Continuation = 0x0;
    public const byte Text = 0x1;
    public const byte Binary = 0x2;
    public const byte Close = 0x8;
    public const byte Ping = 0x9;
    public const byte Pong = 0xA;
}

/// <summary>One frame as the server sent it (payload already unmasked, if it was masked at all).</summary>
public sealed record RawFrame(bool Fin, int Rsv, byte Opcode, bool Masked, byte[] Payload)
{
    public string Text => Encoding.UTF8.GetString(Payload);

    public override string ToString() => $"frame(fin={Fin}, rsv={Rsv}, opcode=0x{Opcode:X}, masked={Masked}, {Payload.Length} bytes)";
}

/// <summary>How a connection ended, as the raw client saw it.</summary>
public sealed record CloseOutcome(int? Code, string Reason, bool ClosedWithoutCloseFrame, bool Reset, bool ServerClosedTcp)
{
    public override string ToString() =>
        Code is { } code ? $"close frame {code} '{Reason}' (server then closed TCP: {ServerClosedTcp}, reset: {Reset})"
        : Reset ? "TCP reset without a close frame (a client would report 1006)"
        : ClosedWithoutCloseFrame ? "TCP closed without a close frame (a client would report 1006)"
        : "close frame without a status code (1005)";
}

/// <summary>The status line and headers of an HTTP response to a handshake.</summary>
public sealed record RawHttpResponse(int Status, IReadOnlyDictionary<string, string> Headers)
{
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}

/// <summary>
/// A deliberately dumb WebSocket client over a raw TCP socket: the HTTP upgrade is written by hand, and every frame
/// is built byte by byte, so tests can send what no well-behaved client library would (reserved bits, reserved
/// opcodes, unmasked frames, lying lengths, broken UTF-8, …) and see exactly what the server answers.
/// </summary>
public sealed class RawWebSocket : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    private RawWebSocket(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>The response to the opening handshake.</summary>
    public RawHttpResponse? Handshake { get; private set; }

    /// <summary>Pings the server sent while we were waiting for something else.</summary>
    public int ServerPingsAnswered { get; private set; }

    public static string NewKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));

    public static string ExpectedAccept(string key) =>
#pragma warning disable CA5350 // RFC 6455 fixes SHA-1 here.
        Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350

    /// <summary>Opens a TCP connection to 127.0.0.1 and sends a handshake; returns the client even when the server refused.</summary>
    public static async Task<RawWebSocket> HandshakeAsync(int port, string request)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using (var cts = new CancellationTokenSource(DefaultTimeout))
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        }
        var client = new RawWebSocket(socket);
        await client.SendRawAsync(Encoding.ASCII.GetBytes(request));
        client.Handshake = await client.ReadHttpResponseAsync();
        return client;
    }

    /// <summary>Builds an upgrade request for /ws; a null (or, for Upgrade/Connection, empty) value leaves that header out.</summary>
    public static string UpgradeRequest(int port, string? key = null, string? version = "13", string? protocol = "herald.json",
        string upgrade = "websocket", string connection = "Upgrade", string? extraHeaders = null)
    {
        var sb = new StringBuilder();
        sb.Append("GET /ws HTTP/1.1\r\n");
        sb.Append($"Host: 127.0.0.1:{port}\r\n");
        if (upgrade.Length > 0)
        {
            sb.Append($"Upgrade: {upgrade}\r\n");
        }
        if (connection.Length > 0)
        {
            sb.Append($"Connection: {connection}\r\n");
        }
        if (key is not null)
        {
            sb.Append($"Sec-WebSocket-Key: {key}\r\n");
        }
        if (version is not null)
        {
            sb.Append($"Sec-WebSocket-Version: {version}\r\n");
        }
        if (protocol is not null)
        {
            sb.Append($"Sec-WebSocket-Protocol: {protocol}\r\n");
        }
        sb.Append(extraHeaders);
        sb.Append("\r\n");
        return sb.ToString();
    }

    /// <summary>Opens a WebSocket (subprotocol herald.json) and asserts the server switched protocols.</summary>
    public static async Task<RawWebSocket> OpenAsync(int port)
    {
        var key = NewKey();
        var client = await HandshakeAsync(port, UpgradeRequest(port, key));
        Assert.Equal(101, client.Handshake!.Status);
        Assert.Equal(ExpectedAccept(key), client.Handshake.Header("sec-websocket-accept"));
        return client;
    }

    /// <summary>Opens a WebSocket and sends <c>connect</c> (id 1), asserting the reply.</summary>
    public static async Task<RawWebSocket> OpenConnectedAsync(int port)
    {
        var client = await OpenAsync(port);
        await client.SendTextAsync("""{"id":1,"op":"connect"}""");
        var reply = await client.ReadReplyAsync();
        Assert.Equal(1, reply.GetProperty("id").GetInt64());
        Assert.True(reply.TryGetProperty("result", out _), $"connect failed: {reply}");
        return client;
    }

    // ---- sending ----

    public async Task SendRawAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await _stream.WriteAsync(bytes, cts.Token);
    }

    /// <summary>
    /// Builds one frame exactly as told: <paramref name="rsv"/> is the three reserved bits (0-7);
    /// <paramref name="announcedLength"/> overrides the length field (the payload sent is still <paramref name="payload"/>).
    /// </summary>
    public static byte[] BuildFrame(byte opcode, ReadOnlySpan<byte> payload, bool fin = true, int rsv = 0, bool mask = true, long? announcedLength = null)
    {
        var length = announcedLength ?? payload.Length;
        var header = new List<byte>(14) { (byte)((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0F)) };
        var maskBit = mask ? 0x80 : 0;
        if (length <= 125)
        {
            header.Add((byte)(maskBit | (int)length));
        }
        else if (length <= ushort.MaxValue)
        {
            header.Add((byte)(maskBit | 126));
            header.Add((byte)(length >> 8));
            header.Add((byte)length);
        }
        else
        {
            header.Add((byte)(maskBit | 127));
            for (var shift = 56; shift >= 0; shift -= 8)
            {
                header.Add((byte)(length >> shift));
            }
        }
        var key = mask ? RandomNumberGenerator.GetBytes(4) : [];
        header.AddRange(key);
        var frame = new byte[header.Count + payload.Length];
        header.CopyTo(frame);
        for (var i = 0; i < payload.Length; i++)
        {
            frame[header.Count + i] = mask ? (byte)(payload[i] ^ key[i & 3]) : payload[i];
        }
        return frame;
    }

    public Task SendFrameAsync(byte opcode, ReadOnlySpan<byte> payload, bool fin = true, int rsv = 0, bool mask = true, long? announcedLength = null) =>
        SendRawAsync(BuildFrame(opcode, payload, fin, rsv, mask, announcedLength));

    public Task SendFrameAsync(byte opcode, string payload, bool fin = true, int rsv = 0, bool mask = true) =>
        SendFrameAsync(opcode, Encoding.UTF8.GetBytes(payload), fin, rsv, mask);

    public Task SendTextAsync(string text) => SendFrameAsync(Op.Text, text);

    public static byte[] ClosePayload(int code, string reason = "") => ClosePayload(code, Encoding.UTF8.GetBytes(reason));

    public static byte[] ClosePayload(int code, ReadOnlySpan<byte> reason)
    {
        var payload = new byte[2 + reason.Length];
        BinaryPrimitives.WriteUInt16BigEndian(payload, (ushort)code);
        reason.CopyTo(payload.AsSpan(2));
        return payload;
    }

    // ---- receiving ----

    /// <summary>Reads the next frame the server sends, whatever it is.</summary>
    public async Task<RawFrame> ReadFrameAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var token = cts.Token;
        await FillAsync(2, token);
        var b0 = _buffer[_start];
        var b1 = _buffer[_start + 1];
        var masked = (b1 & 0x80) != 0;
        var len7 = b1 & 0x7F;
        var headerLength = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
        await FillAsync(headerLength, token);
        var header = _buffer.AsSpan(_start, headerLength);
        long length = len7 == 126 ? BinaryPrimitives.ReadUInt16BigEndian(header[2..])
            : len7 == 127 ? (long)BinaryPrimitives.ReadUInt64BigEndian(header[2..])
            : len7;
        Assert.InRange(length, 0, 16 * 1024 * 1024);
        var maskKey = masked ? header[(headerLength - 4)..].ToArray() : [];
        await FillAsync(headerLength + (int)length, token);
        var payload = _buffer.AsSpan(_start + headerLength, (int)length).ToArray();
        _start += headerLength + (int)length;
        for (var i = 0; masked && i < payload.Length; i++)
        {
            payload[i] ^= maskKey[i & 3];
        }
        return new RawFrame((b0 & 0x80) != 0, (b0 >> 4) & 7, (byte)(b0 & 0x0F), masked, payload);
    }

    /// <summary>Reads the next frame that is not a server ping (answering those with a pong, as a client must).</summary>
    public async Task<RawFrame> ReadNonPingFrameAsync(TimeSpan? timeout = null)
    {
        while (true)
        {
            var frame = await ReadFrameAsync(timeout);
            if (frame.Opcode != Op.Ping)
            {
                return frame;
            }
            ServerPingsAnswered++;
            await SendFrameAsync(Op.Pong, frame.Payload);
        }
    }

    /// <summary>Reads one complete data message (reassembling fragments; a close frame fails the test).</summary>
    public async Task<string> ReadMessageAsync(TimeSpan? timeout = null)
    {
        var message = new MemoryStream();
        while (true)
        {
            var frame = await ReadNonPingFrameAsync(timeout);
            if (frame.Opcode == Op.Close)
            {
                Assert.Fail($"expected a message, got close {DescribeClose(frame)}");
            }
            if (frame.Opcode == Op.Pong)
            {
                continue;
            }
            Assert.Equal(0, frame.Rsv);
            Assert.False(frame.Masked, "a server must not mask its frames");
            Assert.Equal(message.Length == 0 ? Op.Text : Op.Continuation, frame.Opcode);
            message.Write(frame.Payload);
            if (frame.Fin)
            {
                return Encoding.UTF8.GetString(message.ToArray());
            }
        }
    }

    private readonly Queue<JsonElement> _pendingReplies = new();

    /// <summary>The next JSON reply or push; one server frame may carry several, separated by newlines.</summary>
    public async Task<JsonElement> ReadReplyAsync(TimeSpan? timeout = null)
    {
        while (_pendingReplies.Count == 0)
        {
            foreach (var line in (await ReadMessageAsync(timeout)).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                _pendingReplies.Enqueue(JsonDocument.Parse(line).RootElement.Clone());
            }
        }
        return _pendingReplies.Dequeue();
    }

    /// <summary>
    /// Waits for the server's close frame (skipping data, pings and pongs), then behaves as a real client: echoes a
    /// close frame (or, when <paramref name="replyWithClose"/> is false, half-closes TCP) and waits for the server
    /// to close the TCP connection. A reset or an end of stream before the close frame is reported, not thrown.
    /// </summary>
    public async Task<CloseOutcome> ReadCloseAsync(TimeSpan? timeout = null, bool replyWithClose = true)
    {
        RawFrame frame;
        try
        {
            do
            {
                frame = await ReadNonPingFrameAsync(timeout);
            }
            while (frame.Opcode != Op.Close);
        }
        catch (EndOfStreamException)
        {
            return new CloseOutcome(null, "", ClosedWithoutCloseFrame: true, Reset: false, ServerClosedTcp: true);
        }
        catch (IOException ex) when (IsReset(ex))
        {
            return new CloseOutcome(null, "", ClosedWithoutCloseFrame: true, Reset: true, ServerClosedTcp: true);
        }
        int? code = frame.Payload.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(frame.Payload) : null;
        var reason = frame.Payload.Length > 2 ? Encoding.UTF8.GetString(frame.Payload, 2, frame.Payload.Length - 2) : "";
        Assert.True(frame.Fin, "a close frame must not be fragmented");
        Assert.False(frame.Masked, "a server must not mask its frames");
        var reset = false;
        try
        {
            if (replyWithClose)
            {
                await SendFrameAsync(Op.Close, code is { } c ? ClosePayload(c) : []);
            }
            else
            {
                _socket.Shutdown(SocketShutdown.Send);
            }
        }
        catch (IOException ex) when (IsReset(ex))
        {
            reset = true;
        }
        var closed = reset || await WaitForServerToCloseTcpAsync(timeout ?? DefaultTimeout);
        return new CloseOutcome(code, reason, ClosedWithoutCloseFrame: false, Reset: reset, ServerClosedTcp: closed);
    }

    /// <summary>Reads until the server closes TCP (keeping the bytes in <paramref name="received"/> if given); false when it did not within the timeout.</summary>
    public async Task<bool> WaitForServerToCloseTcpAsync(TimeSpan timeout, List<byte>? received = null)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            received?.AddRange(_buffer.AsSpan(_start, _end - _start));
            _start = _end = 0;
            int read;
            while ((read = await _stream.ReadAsync(_buffer, cts.Token)) > 0)
            {
                received?.AddRange(_buffer.AsSpan(0, read));
            }
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException ex) when (IsReset(ex))
        {
            return true;
        }
    }

    /// <summary>Asserts the server sent close <paramref name="expected"/>, that it arrived intact, and that the server then closed TCP.</summary>
    public async Task<CloseOutcome> ExpectCloseAsync(int expected, TimeSpan? timeout = null, bool replyWithClose = true)
    {
        var outcome = await ReadCloseAsync(timeout, replyWithClose);
        Assert.True(outcome.Code == expected, $"expected close {expected}, got {outcome}");
        Assert.True(outcome.ServerClosedTcp, $"the server did not close TCP after the close handshake ({outcome})");
        return outcome;
    }

    private static string DescribeClose(RawFrame frame) =>
        frame.Payload.Length >= 2 ? $"{BinaryPrimitives.ReadUInt16BigEndian(frame.Payload)} '{Encoding.UTF8.GetString(frame.Payload, 2, frame.Payload.Length - 2)}'" : "(no code)";

    // A write to a connection the server has already reset fails with EPIPE ("broken pipe", SocketError.Shutdown): with
    // the transport inline, a server that fails the connection (RFC 6455 7.1.7) can close TCP before our close reply.
    private static bool IsReset(IOException ex) =>
        ex.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown };

    private async Task<RawHttpResponse> ReadHttpResponseAsync()
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        int end;
        while ((end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8)) < 0)
        {
            await FillAsync(_end - _start + 1, cts.Token);
        }
        var text = Encoding.ASCII.GetString(_buffer, _start, end);
        _start += end + 4;
        var lines = text.Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1]);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':');
            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            headers[name] = headers.TryGetValue(name, out var previous) ? previous + ", " + value : value;
        }
        return new RawHttpResponse(status, headers);
    }

    /// <summary>Ensures at least <paramref name="count"/> unread bytes are buffered.</summary>
    private async Task FillAsync(int count, CancellationToken token)
    {
        if (_end - _start >= count)
        {
            return;
        }
        if (_buffer.Length - _start < count)
        {
            var larger = new byte[Math.Max(_buffer.Length, count * 2)];
            _buffer.AsSpan(_start, _end - _start).CopyTo(larger);
            _end -= _start;
            _start = 0;
            _buffer = larger;
        }
        while (_end - _start < count)
        {
            var read = await _stream.ReadAsync(_buffer.AsMemory(_end), token);
            if (read == 0)
            {
                throw new EndOfStreamException("the server closed the TCP connection");
            }
            _end += read;
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Close(0);
        return _stream.DisposeAsync();
    }
}
