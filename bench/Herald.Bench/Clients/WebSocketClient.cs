using System.Buffers;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Herald.Bench.Measurement;

namespace Herald.Bench.Clients;

/// <summary>
/// A WebSocket subscriber: the RFC 6455 upgrade written by hand over a counted socket (so the bytes are measured and
/// the source address is chosen), then .NET's WebSocket. Subclasses speak each system's protocol on top.
/// </summary>
internal abstract class WebSocketClient(ClientContext context, string channel, string path) : BenchClient(context, channel)
{
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private WebSocket? _socket;

    protected WebSocket Socket => _socket ?? throw new InvalidOperationException("not open");

    /// <summary>Stops and resumes this subscriber's reading (always reading when not set).</summary>
    public ReadPace? Pace { get; init; }

    /// <summary>The close code the server sent (e.g. 4002), once it closed the connection with a close frame.</summary>
    public int? CloseCode { get; private set; }

    /// <summary>Why the connection ended other than by a close frame (reset, aborted), or <see langword="null"/>.</summary>
    public string? LostWith { get; private set; }

    /// <summary><see cref="Stopwatch"/> timestamp of when the client saw the connection end (0 while open).</summary>
    public long EndedAt { get; private set; }

    protected override async Task OpenAsync(CancellationToken cancellationToken)
    {
        var stream = await Context.ConnectAsync(Context.Port, cancellationToken).ConfigureAwait(false);
        try
        {
            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            var request = Encoding.ASCII.GetBytes(
                $"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{Context.Port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n");
            await stream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
            Context.Stats.CountOut(request.Length);

            var buffer = new byte[4096];
            var filled = 0;
            int end;
            while ((end = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
            {
                if (filled == buffer.Length)
                {
                    throw new IOException("WebSocket upgrade answer too long");
                }
                var n = await stream.ReadAsync(buffer.AsMemory(filled), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new IOException("connection closed during the WebSocket upgrade");
                }
                filled += n;
                Context.Stats.CountIn(n);
            }
            if (!buffer.AsSpan(0, filled).StartsWith("HTTP/1.1 101"u8))
            {
                var status = Encoding.ASCII.GetString(buffer, 0, Math.Min(filled, buffer.AsSpan(0, filled).IndexOf("\r\n"u8)));
                throw new IOException($"WebSocket upgrade refused: {status}");
            }
            var rest = filled - (end + 4);
            var counted = new CountingStream(stream, Context.Stats, rest > 0 ? buffer.AsSpan(end + 4, rest).ToArray() : null);
            _socket = WebSocket.CreateFromStream(counted, new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        await OnOpenAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends the protocol's handshake and subscription.</summary>
    protected abstract Task OnOpenAsync(CancellationToken cancellationToken);

    /// <summary>Handles one whole text message (count payloads, answer pings).</summary>
    protected abstract ValueTask OnMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken);

    protected async ValueTask SendAsync(string text, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    protected override async Task RunAsync(CancellationToken cancellationToken)
    {
        // Small to start with: idle connections are most of what this generator holds.
        var buffer = ArrayPool<byte>.Shared.Rent(2048);
        var filled = 0;
        try
        {
            while (true)
            {
                var result = await Socket.ReceiveAsync(buffer.AsMemory(filled), cancellationToken).ConfigureAwait(false);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    CloseCode = (int?)Socket.CloseStatus;
                    EndedAt = Stopwatch.GetTimestamp();
                    throw new IOException($"closed by the server: {Socket.CloseStatus} {Socket.CloseStatusDescription}");
                }
                filled += result.Count;
                if (Pace is { } pace)
                {
                    await pace.AfterReadAsync(cancellationToken).ConfigureAwait(false);
                }
                if (!result.EndOfMessage)
                {
                    if (filled == buffer.Length)
                    {
                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, filled).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                    continue;
                }
                await OnMessageAsync(buffer.AsMemory(0, filled), cancellationToken).ConfigureAwait(false);
                filled = 0;
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException && CloseCode is null && !cancellationToken.IsCancellationRequested)
        {
            // A server that gives up on the close handshake (a reader stalled past its close timeout) resets the socket.
            LostWith = e.InnerException?.Message ?? e.Message;
            EndedAt = Stopwatch.GetTimestamp();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        _socket?.Abort();
        await base.DisposeAsync().ConfigureAwait(false);
        _socket?.Dispose();
        _sendLock.Dispose();
    }
}

/// <summary>
/// Herald over WebSocket: <c>connect</c> and <c>subscribe</c> in one message; pushes carry the payloads. With
/// <see cref="Offsets"/> set it also follows the channel's offsets, line by line, to check every one arrives once.
/// </summary>
internal sealed class HeraldWebSocketClient(ClientContext context, string channel) : WebSocketClient(context, channel, "/ws")
{
    private const int SubscribeId = 2;

    /// <summary>Checks the offsets this subscriber receives (not followed when not set: parsing costs the generator CPU).</summary>
    public OffsetCheck? Offsets { get; init; }

    protected override Task OnOpenAsync(CancellationToken cancellationToken) =>
        SendAsync($"{{\"id\":1,\"op\":\"connect\"}}\n{{\"id\":{SubscribeId},\"op\":\"subscribe\",\"channel\":\"{Channel}\"}}", cancellationToken).AsTask();

    protected override ValueTask OnMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        if (message.Span.IndexOf("\"error\""u8) >= 0 && message.Span.IndexOf("\"push\""u8) < 0)
        {
            throw new IOException("Herald refused: " + Encoding.UTF8.GetString(message.Span));
        }
        OnData(message.Span);
        if (Offsets is { } offsets)
        {
            // A frame holds one or more messages, one per line.
            foreach (var line in message.Span.Split((byte)'\n'))
            {
                offsets.Observe(message.Span[line], SubscribeId);
            }
        }
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// ASP.NET Core SignalR's JSON hub protocol over a WebSocket without negotiate: handshake, one <c>Subscribe</c>
/// invocation, and a ping every 15 s because the server drops a client silent for 30 s.
/// </summary>
internal sealed class SignalRWebSocketClient(ClientContext context, string channel) : WebSocketClient(context, channel, "/hub")
{
    private const char RecordSeparator = '\u001e';
    private Task _keepAlive = Task.CompletedTask;

    protected override async Task OnOpenAsync(CancellationToken cancellationToken)
    {
        await SendAsync($"{{\"protocol\":\"json\",\"version\":1}}{RecordSeparator}", cancellationToken).ConfigureAwait(false);
        await SendAsync($"{{\"type\":1,\"target\":\"Subscribe\",\"arguments\":[\"{Channel}\"]}}{RecordSeparator}", cancellationToken).ConfigureAwait(false);
        _keepAlive = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(15));
            try
            {
                while (await timer.WaitForNextTickAsync(Stopping).ConfigureAwait(false))
                {
                    await SendAsync($"{{\"type\":6}}{RecordSeparator}", Stopping).ConfigureAwait(false);
                }
            }
            catch (Exception)
            {
                // The receive loop reports the failure; the pinger just stops.
            }
        }, CancellationToken.None);
    }

    protected override ValueTask OnMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        if (message.Span.IndexOf("\"type\":7"u8) >= 0)
        {
            throw new IOException("SignalR closed: " + Encoding.UTF8.GetString(message.Span));
        }
        OnData(message.Span);
        return ValueTask.CompletedTask;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync().ConfigureAwait(false);
        await _keepAlive.ConfigureAwait(false);
    }
}

/// <summary>Socket.IO 4 (Engine.IO 4) over WebSocket: <c>40</c> to join the namespace, <c>42["subscribe",ch]</c>, and <c>3</c> for every ping <c>2</c>.</summary>
internal sealed class SocketIoWebSocketClient(ClientContext context, string channel)
    : WebSocketClient(context, channel, "/socket.io/?EIO=4&transport=websocket")
{
    protected override Task OnOpenAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override async ValueTask OnMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        var span = message.Span;
        if (span.Length == 0)
        {
            return;
        }
        switch (span[0])
        {
            case (byte)'0': // Engine.IO open: join the default namespace.
                await SendAsync("40", cancellationToken).ConfigureAwait(false);
                break;
            case (byte)'2': // Engine.IO ping.
                await SendAsync("3", cancellationToken).ConfigureAwait(false);
                break;
            case (byte)'1':
                throw new IOException("Socket.IO closed the connection");
            case (byte)'4' when span.Length > 1 && span[1] == (byte)'0': // namespace joined
                await SendAsync($"42[\"subscribe\",\"{Channel}\"]", cancellationToken).ConfigureAwait(false);
                break;
            case (byte)'4' when span.Length > 1 && span[1] == (byte)'4':
                throw new IOException("Socket.IO refused: " + Encoding.UTF8.GetString(span));
            default:
                OnData(span);
                break;
        }
    }
}

/// <summary>Nchan's WebSocket subscriber at <c>/sub/&lt;channel&gt;</c>: every frame is one raw message.</summary>
internal sealed class NchanWebSocketClient(ClientContext context, string channel) : WebSocketClient(context, channel, $"/sub/{channel}")
{
    protected override Task OnOpenAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override ValueTask OnMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        OnData(message.Span);
        return ValueTask.CompletedTask;
    }
}
