using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// Takes a WebSocket out of Kestrel's HTTP layer once its handshake is answered (<see cref="HeraldOptions.WebSocketHandoff"/>).
/// A connection middleware: a connection whose first request starts <c>GET /ws</c> goes to the HTTP layer as usual (so the
/// forwarded headers, the origin policy, the limits and the handshake's checks all run as for any request), but through a
/// <see cref="ConnectionContext"/> of its own. When <c>/ws</c> accepts the WebSocket it sends the 101 answer, hands the
/// connection to this middleware (<see cref="Accept"/>) and ends the request; the HTTP layer then lets the connection go
/// (a 101 answer ends HTTP on it), and the WebSocket runs on the transport itself. What the HTTP/1.1 connection and its
/// request kept for the WebSocket's whole life (about 8 KB, docs/benchmarks.md) is garbage from then on.
/// </summary>
/// <remarks>
/// Only the first request of a plaintext connection is looked at: a WebSocket requested later on a keep-alive connection,
/// over TLS (the middleware sees ciphertext) or over HTTP/2 stays inside its request, as without the option.
/// </remarks>
internal sealed class WebSocketHandoff
{
    /// <summary>What a handed-off connection's first bytes are: the request line of <c>GET /ws</c>, with or without a query.</summary>
    private static ReadOnlySpan<byte> Path => "GET /ws"u8;

    /// <summary>Bytes enough to tell: any HTTP request is longer, so waiting for them never stalls one that is not ours.</summary>
    private const int PrefixLength = 8;

    private readonly ConnectionContext _connection;
    private WebSocketConnection? _accepted;

    private WebSocketHandoff(ConnectionContext connection) => _connection = connection;

    /// <summary>The connection itself (not the one the HTTP layer was given): the WebSocket's transport, socket and abort.</summary>
    public ConnectionContext Connection => _connection;

    /// <summary>Called by <c>/ws</c> once the 101 answer is sent: the connection runs when the HTTP layer has let it go.</summary>
    public void Accept(WebSocketConnection connection) => _accepted = connection;

    /// <summary>
    /// The middleware. <paramref name="firstBytesTimeout"/> is how long a new connection may send nothing before it is
    /// closed (Kestrel's <c>Limits.KeepAliveTimeout</c>, which the HTTP layer would otherwise apply to it).
    /// </summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(Func<TimeSpan> firstBytesTimeout) =>
        next => connection => OnConnectionAsync(connection, next, firstBytesTimeout);

    private static Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next, Func<TimeSpan> firstBytesTimeout)
    {
        var input = connection.Transport.Input;
        if (input.TryRead(out var read))
        {
            if (read.Buffer.Length >= PrefixLength || read.IsCompleted)
            {
                var ours = IsWebSocketRequest(read.Buffer);
                // Nothing consumed or examined: the HTTP layer reads the same bytes.
                input.AdvanceTo(read.Buffer.Start);
                // Every other connection goes on as if this middleware were not there, with no state of its own.
                return ours ? HandOffAsync(connection, next) : next(connection);
            }
            input.AdvanceTo(read.Buffer.Start);
        }
        return WaitForPrefixAsync(connection, next, firstBytesTimeout());
    }

    private static async Task WaitForPrefixAsync(ConnectionContext connection, ConnectionDelegate next, TimeSpan timeout)
    {
        var input = connection.Transport.Input;
        ReadResult read;
        using (var silence = new CancellationTokenSource(timeout))
        {
            try
            {
                read = await input.ReadAtLeastAsync(PrefixLength, silence.Token);
            }
            catch (OperationCanceledException) when (silence.IsCancellationRequested)
            {
                return; // nothing sent in time: closed, as Kestrel closes an idle connection
            }
        }
        var ours = IsWebSocketRequest(read.Buffer);
        input.AdvanceTo(read.Buffer.Start);
        if (!ours)
        {
            await next(connection);
        }
        // HandOffAsync written out: the WebSocket's life is awaited here, by one state machine rather than two.
        else if (await HandshakeAsync(connection, next) is { } accepted)
        {
            await accepted.RunAsync();
        }
    }

    private static bool IsWebSocketRequest(ReadOnlySequence<byte> buffer)
    {
        if (buffer.Length < PrefixLength)
        {
            return false;
        }
        Span<byte> start = stackalloc byte[PrefixLength];
        buffer.Slice(0, PrefixLength).CopyTo(start);
        return start.StartsWith(Path) && start[^1] is (byte)' ' or (byte)'?';
    }

    private static async Task HandOffAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        // Only the accepted connection is kept across the WebSocket's life; the handshake's objects go with its method.
        if (await HandshakeAsync(connection, next) is { } accepted)
        {
            await accepted.RunAsync();
        }
    }

    /// <summary>Runs the HTTP layer on the connection until it lets go; returns the WebSocket that <c>/ws</c> accepted, if any.</summary>
    private static async Task<WebSocketConnection?> HandshakeAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var handoff = new WebSocketHandoff(connection);
        var http = new HandshakeConnection(connection, handoff);
        try
        {
            await next(http);
        }
        catch when (handoff._accepted is not null)
        {
            // Kestrel's HTTP layer handles its own errors; should one escape after the 101 went out, the connection
            // still runs (and ends at once if the transport failed), so that its slot and session are released.
        }
        finally
        {
            // The HTTP layer is done with the connection: its heartbeat handler must not run on (nor keep it alive).
            http.Detach();
        }
        return handoff._accepted;
    }

    /// <summary>
    /// The connection as the HTTP layer sees it: the same transport, id, endpoints and abort, but a feature collection of
    /// its own over the connection's (so the HTTP layer finds the <see cref="WebSocketHandoff"/>) and a heartbeat that can
    /// be detached. Kestrel's HTTP layer registers a heartbeat handler on the connection and never removes it; through the
    /// connection itself, that handler would keep the HTTP/1.1 connection and its request alive as long as the WebSocket.
    /// </summary>
    private sealed class HandshakeConnection : ConnectionContext, IConnectionHeartbeatFeature
    {
        private readonly ConnectionContext _connection;
        private readonly Lock _gate = new();
        private HeartbeatRelay? _relays;

        public HandshakeConnection(ConnectionContext connection, WebSocketHandoff handoff)
        {
            _connection = connection;
            Features = new FeatureCollection(connection.Features);
            Features.Set<IConnectionHeartbeatFeature>(this);
            Features.Set(handoff);
        }

        public override IFeatureCollection Features { get; }

        public override string ConnectionId
        {
            get => _connection.ConnectionId;
            set => _connection.ConnectionId = value;
        }

        public override IDictionary<object, object?> Items
        {
            get => _connection.Items;
            set => _connection.Items = value;
        }

        public override IDuplexPipe Transport
        {
            get => _connection.Transport;
            set => _connection.Transport = value;
        }

        public override EndPoint? LocalEndPoint
        {
            get => _connection.LocalEndPoint;
            set => _connection.LocalEndPoint = value;
        }

        public override EndPoint? RemoteEndPoint
        {
            get => _connection.RemoteEndPoint;
            set => _connection.RemoteEndPoint = value;
        }

        public override CancellationToken ConnectionClosed
        {
            get => _connection.ConnectionClosed;
            set => _connection.ConnectionClosed = value;
        }

        public override void Abort(ConnectionAbortedException abortReason) => _connection.Abort(abortReason);

        public override void Abort() => _connection.Abort();

        // The connection is Kestrel's to dispose, when the middleware returns; the base disposes nothing.
        public override ValueTask DisposeAsync() => base.DisposeAsync();

        public void OnHeartbeat(Action<object> action, object state)
        {
            var relay = new HeartbeatRelay(action, state);
            lock (_gate)
            {
                relay.Next = _relays;
                _relays = relay;
            }
            _connection.Features.Get<IConnectionHeartbeatFeature>()?.OnHeartbeat(static relay => ((HeartbeatRelay)relay).Tick(), relay);
        }

        /// <summary>Stops every heartbeat handler of the HTTP layer; each relay stays registered, empty (a few bytes).</summary>
        public void Detach()
        {
            lock (_gate)
            {
                for (var relay = _relays; relay is not null; relay = relay.Next)
                {
                    relay.Clear();
                }
                _relays = null;
            }
        }
    }

    /// <summary>One heartbeat handler of the HTTP layer, registered on the connection through this until detached.</summary>
    private sealed class HeartbeatRelay(Action<object> action, object state)
    {
        private Action<object>? _action = action;
        private object? _state = state;

        public HeartbeatRelay? Next { get; set; }

        public void Tick()
        {
            var action = Volatile.Read(ref _action);
            var state = Volatile.Read(ref _state);
            if (action is not null && state is not null)
            {
                action(state);
            }
        }

        public void Clear()
        {
            Volatile.Write(ref _action, null);
            Volatile.Write(ref _state, null);
            Next = null;
        }
    }
}
