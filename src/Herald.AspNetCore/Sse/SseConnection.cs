using System.Buffers;
using System.Diagnostics;
using Herald.Diagnostics;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.Sse;

/// <summary>
/// One Server-Sent Events stream: a session (the same subscriptions, recovery, queue and limits as a WebSocket) whose
/// transport writes each queued message as an event, <c>id: &lt;every channel's position&gt;</c> then
/// <c>data: &lt;the JSON message&gt;</c>, and a comment line while idle (the node's <see cref="KeepAliveWheel"/> says when).
/// It has no inbound side: commands go to <c>/cmd</c>.
/// </summary>
// RunAsync disposes what it owns before it returns; the type is never used after that.
#pragma warning disable CA1001
internal sealed partial class SseConnection : ISessionTransport, IKeepAliveMember
#pragma warning restore CA1001
{
    private static readonly byte[] IdPrefix = "id: "u8.ToArray();
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] Heartbeat = ":\n\n"u8.ToArray();

    private readonly HeraldNode _node;
    private readonly HttpContext _http;
    private readonly KeepAliveWheel? _keepAlive;
    private readonly ILogger _logger;
    private readonly Dictionary<string, int> _slots;
    private readonly ulong[] _offsets;
    private readonly string?[] _epochs;
    private readonly byte[][] _epochBytes;
    private readonly CancellationTokenSource _abort = new();
    private readonly TaskCompletionSource _closeDecided = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _closeRequested;
    private int _closeCode = CloseCodes.Normal;
    private string _closeReason = "";
    private ITimer? _closeDeadline;
    private int _wroteSinceTick;

    // channels: in the order of the request, which is the order of the positions in ids; start: each one's cursor, or null.
    public SseConnection(HeraldNode node, HttpContext http, IReadOnlyList<string> channels, IReadOnlyList<StreamPosition?> start, KeepAliveWheel? keepAlive, ILogger logger)
    {
        _node = node;
        _http = http;
        _keepAlive = keepAlive;
        _logger = logger;
        _slots = new Dictionary<string, int>(channels.Count, StringComparer.Ordinal);
        _offsets = new ulong[channels.Count];
        _epochs = new string?[channels.Count];
        _epochBytes = new byte[channels.Count][];
        for (var i = 0; i < channels.Count; i++)
        {
            _slots.Add(channels[i], i);
            _offsets[i] = start[i]?.Offset ?? 0;
            _epochs[i] = start[i]?.Epoch;
            _epochBytes[i] = start[i] is { } p ? System.Text.Encoding.ASCII.GetBytes(p.Epoch) : [];
        }
        Session = new ClientSession(node, this);
    }

    public ClientSession Session { get; }

    public string Name => Herald.Handlers.HeraldTransportNames.Sse;

    // The request lives as long as the stream (RunAsync runs inside it), so handlers read its headers live.
    public IReadOnlyDictionary<string, string> Headers => new RequestHeaders(_http.Request.Headers);

    public string? RemoteAddress => _http.Connection.RemoteIpAddress?.ToString();

    /// <summary>Starts the response and writes events until the stream ends; then ends the session.</summary>
    public async Task RunAsync()
    {
        _node.Metrics.SseConnectionChanged(+1);
        using var aborted = _http.RequestAborted.Register(static state => ((SseConnection)state!).Abort(), this);
        using var stopping = _node.Stopping.Register(static state => ((SseConnection)state!).Close(CloseCodes.GoingAway, "server shutting down"), this);
        _keepAlive?.Add(this);
        try
        {
            var response = _http.Response;
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "text/event-stream; charset=utf-8";
            response.Headers.CacheControl = "no-cache";
            // nginx (and proxies that copy it) buffer responses unless told not to; an event must reach the client at once.
            response.Headers["X-Accel-Buffering"] = "no";
            _http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
            await WriteLoopAsync();
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            Log.WriteEnded(_logger, Session.ClientId, ex.Message);
        }
        catch (Exception ex)
        {
            Log.StreamFailed(_logger, Session.ClientId, ex);
        }
        finally
        {
            _keepAlive?.Remove(this);
            var dropped = !Closing;
            Close(CloseCodes.Normal, "");
            await Session.TerminateAsync();
            // A stream the client went away from ended like a WebSocket without a close frame (1006).
            Session.NotifyDisconnected(dropped ? 1006 : _closeCode, dropped ? "" : _closeReason);
            if (_closeDeadline is { } deadline)
            {
                deadline.Dispose();
            }
            _abort.Dispose();
            _node.Metrics.SseConnectionChanged(-1);
        }
    }

    /// <inheritdoc/>
    public void Close(int code, string reason)
    {
        if (Interlocked.Exchange(ref _closeRequested, 1) != 0)
        {
            return;
        }
        _closeCode = code;
        _closeReason = reason;
        _closeDecided.TrySetResult();
        if (code == CloseCodes.SlowConsumer)
        {
            Session.Outbound.Discard();
        }
        else
        {
            Session.Outbound.Complete(); // what is queued goes out first, then the close event
        }
        // A client that does not read is dropped at the deadline, close event or not.
        _closeDeadline = _node.TimeProvider.CreateTimer(static state => ((SseConnection)state!).Abort(), this, _node.Options.CloseTimeout, Timeout.InfiniteTimeSpan);
    }

    private bool Closing => Volatile.Read(ref _closeRequested) != 0;

    private void Abort()
    {
        try
        {
            _abort.Cancel();
        }
        catch (ObjectDisposedException)
        {
            return; // the stream has ended and RunAsync has cleaned up
        }
        try
        {
            _http.Abort();
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            // The request completed between the check above and here.
        }
    }

    /// <inheritdoc/>
    public int KeepAliveSlot { get; set; } = -1;

    /// <inheritdoc/>
    public int KeepAliveIndex { get; set; }

    /// <inheritdoc/>
    /// <remarks>A stream has nothing to answer with (its client's commands go to <c>/cmd</c>): a dead peer ends it when a write fails.</remarks>
    public void CheckKeepAlive(KeepAliveWheel wheel)
    {
    }

    /// <summary>
    /// A comment line keeps proxies from closing an idle stream; sent only when nothing else was written since the
    /// stream was last due.
    /// </summary>
    public void KeepAliveDue(KeepAliveWheel wheel)
    {
        if (Interlocked.Exchange(ref _wroteSinceTick, 0) == 0 && !Closing)
        {
            // An empty message is the writer's cue for a comment; it goes through the queue so that it never interleaves with an event.
            Session.Outbound.TryEnqueue(ReadOnlyMemory<byte>.Empty);
        }
    }

    private async Task WriteLoopAsync()
    {
        var reader = Session.Outbound.Reader;
        var body = _http.Response.Body;
        long[]? accepted = null;
        var idLength = IdPrefix.Length + SseEventId.MaxLength(_offsets.Length) + 1;
        while (await reader.WaitToReadAsync(_abort.Token))
        {
            // One buffer per batch, rented and returned, so an idle stream holds none.
            var buffer = ArrayPool<byte>.Shared.Rent(8192);
            var count = 0;
            long taken = 0;
            var pushes = 0;
            try
            {
                while (count < WebSockets.WebSocketConnection.MaxBatchBytes && reader.TryRead(out var message))
                {
                    var needed = count + idLength + DataPrefix.Length + message.Bytes.Length + 2;
                    if (needed > buffer.Length)
                    {
                        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, buffer.Length * 2));
                        buffer.AsSpan(0, count).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = larger;
                    }
                    taken += message.Bytes.Length;
                    if (message.Bytes.IsEmpty)
                    {
                        Heartbeat.CopyTo(buffer.AsSpan(count));
                        count += Heartbeat.Length;
                        continue;
                    }
                    if (message.Source is { } source && _slots.TryGetValue(source.Channel, out var slot))
                    {
                        Move(slot, message.Offset, source.Epoch);
                        count = WriteId(buffer, count);
                    }
                    DataPrefix.CopyTo(buffer.AsSpan(count));
                    count += DataPrefix.Length;
                    // Every message is one line of compact JSON (ProtocolWriter never writes a newline), so one data line carries it.
                    message.Bytes.Span.CopyTo(buffer.AsSpan(count));
                    count += message.Bytes.Length;
                    buffer[count++] = (byte)'\n';
                    buffer[count++] = (byte)'\n';
                    if (message.AcceptedTimestamp != 0)
                    {
                        DeliveryStamps.Add(ref accepted, pushes++, message.AcceptedTimestamp);
                    }
                }
                await body.WriteAsync(buffer.AsMemory(0, count), _abort.Token);
                await body.FlushAsync(_abort.Token);
                _node.Metrics.Sent(DeliveryTransport.Sse, msgPack: false, count);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            Volatile.Write(ref _wroteSinceTick, 1);
            Session.Outbound.Written(taken);
            if (pushes > 0)
            {
                var sent = Stopwatch.GetTimestamp();
                for (var i = 0; i < pushes; i++)
                {
                    _node.Metrics.DeliveryWritten(DeliveryTransport.Sse, accepted![i], sent);
                }
                ArrayPool<long>.Shared.Return(accepted!);
                accepted = null;
            }
        }
        // The queue ends before Close has set the code when it overflows (it discards itself, then asks for 4002).
        await _closeDecided.Task.WaitAsync(_abort.Token);
        if (_closeCode != CloseCodes.Normal)
        {
            var close = ProtocolWriter.EncodeClose(_closeCode, _closeReason);
            var frame = new byte[DataPrefix.Length + close.Length + 2];
            DataPrefix.CopyTo(frame, 0);
            close.CopyTo(frame, DataPrefix.Length);
            frame[^2] = (byte)'\n';
            frame[^1] = (byte)'\n';
            await body.WriteAsync(frame, _abort.Token);
            await body.FlushAsync(_abort.Token);
        }
    }

    private void Move(int slot, ulong offset, string epoch)
    {
        _offsets[slot] = offset;
        if (!ReferenceEquals(_epochs[slot], epoch))
        {
            _epochs[slot] = epoch;
            _epochBytes[slot] = System.Text.Encoding.ASCII.GetBytes(epoch); // once per subscription, not per event
        }
    }

    private int WriteId(byte[] buffer, int at)
    {
        IdPrefix.CopyTo(buffer.AsSpan(at));
        at += IdPrefix.Length;
        for (var i = 0; i < _offsets.Length; i++)
        {
            if (i > 0)
            {
                buffer[at++] = (byte)',';
            }
            at = SseEventId.WritePosition(buffer, at, _offsets[i], _epochBytes[i]);
        }
        buffer[at++] = (byte)'\n';
        return at;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 320, Level = LogLevel.Debug, Message = "SSE {ClientId}: writing ended: {Reason}")]
        public static partial void WriteEnded(ILogger logger, string clientId, string reason);

        [LoggerMessage(EventId = 321, Level = LogLevel.Error, Message = "SSE {ClientId} failed")]
        public static partial void StreamFailed(ILogger logger, string clientId, Exception exception);
    }
}
