using System.Buffers;
using System.Diagnostics;
using System.Net.WebSockets;
using Herald.Diagnostics;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// One WebSocket connection: a reader that hands complete messages (text for <c>herald.json</c>, binary for
/// <c>herald.msgpack</c>) to the session, and a single writer that
/// drains the session's outbound queue into one frame and one write per batch. The transport carries frames; it
/// never interprets a command.
/// </summary>
// RunAsync owns and disposes every resource before it returns; the type is never used after that.
#pragma warning disable CA1001
internal sealed partial class WebSocketConnection : ISessionTransport, IThreadPoolWorkItem, IDeferredWriter
#pragma warning restore CA1001
{
    /// <summary>The largest frame the writer builds from queued messages; a single larger message still goes out whole.</summary>
    internal const int MaxBatchBytes = 256 * 1024;

    /// <summary>RFC 6455's code for a connection that ended without a close frame; never sent, only reported.</summary>
    private const int AbnormalClosure = 1006;

    private readonly HeraldNode _node;
    private readonly FrameGuardStream _stream;
    private readonly WebSocket _socket;
    private readonly ClientSession _session;
    // The session's queue, held here too so that the writer's prefetch can reach it without loading the session first.
    private readonly OutboundQueue _outbound;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _abort = new();
    // The source of the message being handled, if any (see HandleMessageAsync).
    private CancellationTokenSource? _commandAbort;
    private int _closeRequested;
    private int _closeCode = CloseCodes.Normal;
    private string _closeReason = "";
    private Timer? _closeDeadline;
    // Until connect succeeds (or the timeout fires): an idle connected client keeps no timer of its own.
    private Timer? _connectTimer;

    /// <summary>
    /// Set once <see cref="Close"/> has set the close code and reason: an overflowing queue ends before the close code is
    /// set, and the writer waits for it.
    /// </summary>
    private LazySignal _closeDecided;

    /// <summary>
    /// The handshake request as handlers see it: the request itself while the connection runs inside it, or a
    /// <see cref="HandshakeSnapshot"/> when the connection was handed off below the HTTP layer and the request has ended.
    /// </summary>
    private readonly object _request;

    /// <summary>The connection slot (<c>Herald:MaxConnections</c>, <c>MaxConnectionsPerIp</c>), given back when the connection ends.</summary>
    private readonly IDisposable _slot;

    private readonly KeepAliveWheel? _keepAlive;

    /// <summary>A connection that runs inside its upgraded request, reading and writing <paramref name="upgraded"/>.</summary>
    public WebSocketConnection(HeraldNode node, Microsoft.AspNetCore.Http.HttpContext http, Stream upgraded, string? subProtocol, KeepAliveWheel? keepAlive, ILogger logger, IDisposable slot)
        : this(node, http, upgraded, http, node.Options.WebSocketDirectSend ? DirectSocketOf(http) : null, subProtocol, keepAlive, logger, slot)
    {
    }

    /// <summary>
    /// A connection handed off below the HTTP layer (<see cref="WebSocketHandoff"/>): it runs on the transport itself once
    /// <paramref name="handshake"/>, whose headers and client address it keeps a copy of, has ended.
    /// </summary>
    public WebSocketConnection(HeraldNode node, WebSocketHandoff handoff, Microsoft.AspNetCore.Http.HttpContext handshake, string? subProtocol, KeepAliveWheel? keepAlive, ILogger logger, IDisposable slot)
        : this(node, new HandshakeSnapshot(handshake), new TransportStream(handoff.Connection.Transport), handoff.Connection,
            node.Options.WebSocketDirectSend && DirectSocketOf(handshake) is not null
                ? handoff.Connection.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature>()?.Socket
                : null,
            subProtocol, keepAlive, logger, slot)
    {
    }

    private WebSocketConnection(HeraldNode node, object request, Stream inner, object owner, System.Net.Sockets.Socket? directSocket, string? subProtocol, KeepAliveWheel? keepAlive, ILogger logger, IDisposable slot)
    {
        _node = node;
        _keepAlive = keepAlive;
        _request = request;
        _slot = slot;
        _logger = logger;
        _stream = new FrameGuardStream(inner, node.Options.MaxMessageBytes, owner, directSocket);
        _socket = WebSocket.CreateFromStream(_stream, new WebSocketCreationOptions
        {
            IsServer = true,
            SubProtocol = subProtocol,
            // Pings are the node's KeepAliveWheel's (one timer for all); the platform's would give each connection a timer.
            KeepAliveInterval = TimeSpan.Zero,
        });
        Encoding = WebSocketHandshake.EncodingOf(subProtocol);
        _messageType = Encoding == WireEncoding.MsgPack ? WebSocketMessageType.Binary : WebSocketMessageType.Text;
        _session = new ClientSession(node, this);
        _outbound = _session.Outbound;
    }

    /// <summary>
    /// The connection's socket, if frames may go straight onto it (<see cref="HeraldOptions.WebSocketDirectSend"/>):
    /// plain HTTP/1.1 on Kestrel's sockets transport. Over TLS the bytes on the socket are ciphertext, and over HTTP/2 the
    /// WebSocket is one stream among others, so those always write through Kestrel.
    /// </summary>
    private static System.Net.Sockets.Socket? DirectSocketOf(Microsoft.AspNetCore.Http.HttpContext http) =>
        http.Request.IsHttps
        || !Microsoft.AspNetCore.Http.HttpProtocol.IsHttp11(http.Request.Protocol)
        || http.Features.Get<Microsoft.AspNetCore.Connections.Features.ITlsHandshakeFeature>() is not null
            ? null
            : http.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature>()?.Socket;

    /// <summary>What a handed-off connection keeps of its handshake request for handlers.</summary>
    private sealed class HandshakeSnapshot(Microsoft.AspNetCore.Http.HttpContext http)
    {
        public HeaderSnapshot Headers { get; } = new(http.Request.Headers);

        public string? RemoteAddress { get; } = http.Connection.RemoteIpAddress?.ToString();
    }

    /// <inheritdoc/>
    public WireEncoding Encoding { get; }

    /// <summary>The frame type of the subprotocol: text for <c>herald.json</c>, binary for <c>herald.msgpack</c>.</summary>
    private readonly WebSocketMessageType _messageType;

    public string Name => Herald.Handlers.HeraldTransportNames.WebSocket;

    // Inside the request, the request lives as long as the connection (RunAsync runs inside it), so handlers read its
    // headers live; a handed-off connection's request has ended, and its headers were copied.
    public IReadOnlyDictionary<string, string> Headers => _request is HandshakeSnapshot snapshot
        ? snapshot.Headers
        : new RequestHeaders(((Microsoft.AspNetCore.Http.HttpContext)_request).Request.Headers);

    public string? RemoteAddress => _request is HandshakeSnapshot snapshot
        ? snapshot.RemoteAddress
        : ((Microsoft.AspNetCore.Http.HttpContext)_request).Connection.RemoteIpAddress?.ToString();

    /// <summary>
    /// Runs the connection until it closes. It does not watch the request's <c>RequestAborted</c>: the read loop always
    /// has a read pending on the connection, which ends when the connection does, and asking Kestrel for that token
    /// makes it create a token source (and this a registration) per connection.
    /// </summary>
    public async Task RunAsync()
    {
        _node.Metrics.WebSocketConnectionChanged(+1, Encoding == WireEncoding.MsgPack);
        _connectTimer = new Timer(
            static state => ((WebSocketConnection)state!).OnConnectTimeout(), this, _node.Options.ConnectTimeout, Timeout.InfiniteTimeSpan);
        using var stopping = _node.Stopping.Register(static state => ((WebSocketConnection)state!).Close(CloseCodes.GoingAway, "server shutting down"), this);
        _keepAlive?.Add(this);
        // The read loop is written out here rather than in a method of its own: an idle connection waits in it for good,
        // and each async method on that path is a state machine kept alive as long as the connection.
        try
        {
            var max = _node.Options.MaxMessageBytes;
            while (true)
            {
                // An idle connection holds no receive buffer: a zero-byte receive waits for the next frame's header,
                // and only then is a buffer rented, for as long as one message takes. SignalR does the same; with
                // tens of thousands of mostly idle subscribers it is most of the memory a connection would cost.
                // No cancellation token: the WebSocket would register one per receive, and an idle connection waits here for
                // good. Abort ends the wait by aborting the socket, which disposes the stream under it.
                var result = await _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return; // the peer's close frame: the finally block answers it
                }
                var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(max + 1, 4096));
                try
                {
                    var count = 0;
                    while (!result.EndOfMessage)
                    {
                        if (count == buffer.Length)
                        {
                            if (buffer.Length > max)
                            {
                                Close(CloseCodes.MessageTooBig, $"message larger than {max} bytes");
                                count = -1;
                            }
                            else
                            {
                                var larger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, max + 1));
                                buffer.AsSpan(0, count).CopyTo(larger);
                                ArrayPool<byte>.Shared.Return(buffer);
                                buffer = larger;
                            }
                        }
                        // Once over the limit the rest of the message is read and thrown away while the close handshake runs.
                        // No token here either: Abort ends this read as it ends the idle wait, and a token would leave
                        // the connection's token source a registration table (and a spare node) for the rest of its life.
                        var target = count < 0 ? buffer.AsMemory() : buffer.AsMemory(count);
                        result = await _socket.ReceiveAsync(target, CancellationToken.None);
                        if (result.MessageType == WebSocketMessageType.Close)
                        {
                            return; // the peer's close frame: the finally block answers it
                        }
                        if (count >= 0)
                        {
                            count += result.Count;
                            if (count > max)
                            {
                                Close(CloseCodes.MessageTooBig, $"message larger than {max} bytes");
                                count = -1;
                            }
                        }
                    }

                    if (Closing || count < 0)
                    {
                        continue; // closing: drain input until the peer's close frame
                    }
                    if (result.MessageType != _messageType)
                    {
                        Close(CloseCodes.UnsupportedData, _messageType == WebSocketMessageType.Text
                            ? "binary messages are not supported on herald.json; send JSON text, or connect with herald.msgpack"
                            : "text messages are not supported on herald.msgpack; send MessagePack in binary messages");
                        continue;
                    }
                    await HandleMessageAsync(buffer.AsMemory(0, count));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            Log.ReadEnded(_logger, _session.ClientId, ex.Message);
        }
        catch (Exception ex)
        {
            Log.ConnectionFailed(_logger, _session.ClientId, ex);
            Close(CloseCodes.InternalError, "internal error");
        }
        finally
        {
            _keepAlive?.Remove(this);
            // What ended the connection, for the disconnect handler: our close, the peer's close frame, or neither (1006).
            var peer = Closing ? null : _socket.CloseStatus;
            var dropped = !Closing && peer is null;
            // However the reader ended, the writer must finish: it sends our close frame (or gives up at the deadline).
            Close(CloseCodes.Normal, "");
            await _writerDone.WaitAsync();
            await _session.TerminateAsync();
            _session.NotifyDisconnected(
                dropped ? AbnormalClosure : peer is { } status ? (int)status : _closeCode,
                dropped ? "" : peer is not null ? _socket.CloseStatusDescription ?? "" : _closeReason);
            // Linger only to protect a close frame of ours: a connection that was aborted without one (the peer stopped
            // answering keep-alive pings, or the close deadline passed) has nothing to protect and goes at once.
            if (!_abort.IsCancellationRequested && _stream.CloseSent)
            {
                await _stream.LingerAsync(_node.Options.CloseTimeout);
            }
            if (_closeDeadline is { } deadline)
            {
                await deadline.DisposeAsync();
            }
            DropConnectTimer();
            _socket.Dispose();
            await _stream.DisposeAsync();
            _abort.Dispose();
            _slot.Dispose();
            _node.Metrics.WebSocketConnectionChanged(-1, Encoding == WireEncoding.MsgPack);
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
        _closeDecided.Set();
        if (code == CloseCodes.SlowConsumer)
        {
            _session.Outbound.Discard();
        }
        else
        {
            _session.Outbound.Complete(); // the writer sends what is queued (e.g. an error reply), then the close frame
        }
        OnQueued(); // an idle writer learns that the queue ended
        // A peer that never answers our close frame, or never reads, is dropped at the deadline.
        _closeDeadline = new Timer(static state => ((WebSocketConnection)state!).Abort(), this, _node.Options.CloseTimeout, Timeout.InfiniteTimeSpan);
    }

    private bool Closing => Volatile.Read(ref _closeRequested) != 0;

    private void OnConnectTimeout()
    {
        DropConnectTimer();
        if (!_session.IsConnected)
        {
            Close(CloseCodes.ConnectTimeout, "no connect command in time");
        }
    }

    /// <inheritdoc/>
    public void Connected() => DropConnectTimer();

    /// <inheritdoc/>
    public void Queued() => OnQueued();

    private void DropConnectTimer() => Interlocked.Exchange(ref _connectTimer, null)?.Dispose();

    /// <summary>
    /// Hands one message to the session, with a token that <see cref="Abort"/> cancels. The token's source lives only as
    /// long as the message: a command that registers on it (many do, once, somewhere on their way) would otherwise leave
    /// the connection's source a registration table and a spare node, about 0.15 KiB, for the rest of its life.
    /// </summary>
    private async ValueTask HandleMessageAsync(ReadOnlyMemory<byte> message)
    {
        using var commandAbort = new CancellationTokenSource();
        Volatile.Write(ref _commandAbort, commandAbort);
        try
        {
            // Abort may have run before the source was in place, and then did not see it.
            if (_abort.IsCancellationRequested)
            {
                commandAbort.Cancel();
            }
            await _session.HandleMessageAsync(message, commandAbort.Token);
        }
        finally
        {
            Volatile.Write(ref _commandAbort, null);
        }
    }

    private void CancelCommand()
    {
        try
        {
            Volatile.Read(ref _commandAbort)?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The message finished, and its source went, at the same time: nothing is left to cancel.
        }
    }

    private void Abort()
    {
        try
        {
            _abort.Cancel();
            // After _abort, so that a message whose source was not yet in place sees _abort cancelled instead.
            CancelCommand();
            _socket.Abort();
            OnQueued(); // an idle writer finishes now, without waiting for the close
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 300, Level = LogLevel.Debug, Message = "WebSocket {ClientId}: reading ended: {Reason}")]
        public static partial void ReadEnded(ILogger logger, string clientId, string reason);

        [LoggerMessage(EventId = 301, Level = LogLevel.Debug, Message = "WebSocket {ClientId}: writing ended: {Reason}")]
        public static partial void WriteEnded(ILogger logger, string clientId, string reason);

        [LoggerMessage(EventId = 302, Level = LogLevel.Error, Message = "WebSocket {ClientId} failed")]
        public static partial void ConnectionFailed(ILogger logger, string clientId, Exception exception);
    }
}
