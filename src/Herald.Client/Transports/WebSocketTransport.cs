using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text.Json;
using Herald.Client.Json;
using Herald.Protocol;

namespace Herald.Client.Transports;

/// <summary>
/// <c>GET /ws</c> with subprotocol <c>herald.json</c> or <c>herald.msgpack</c>: commands go out as text (binary) frames;
/// every frame that comes in is split on <c>\n</c> (into MessagePack values), and its replies and pushes are handled one
/// by one, in order, on the read loop.
/// </summary>
/// <remarks>
/// Over <c>herald.msgpack</c> each message is converted to its <c>herald.json</c> twin with the server's own codec
/// (a publication's <c>data</c> bin becomes <c>"b64"</c>), so that both protocols share one set of wire shapes.
/// </remarks>
internal sealed class WebSocketTransport : ClientTransport
{
    private readonly bool _msgPack;

    private readonly ClientWebSocket _socket = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<long, Pending> _pending = new();
    // Channels this connection sent `subscribe` for, and those whose reply arrived (only those take pushes).
    private readonly ConcurrentDictionary<string, HeraldSubscription> _requested = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, HeraldSubscription> _live = new(StringComparer.Ordinal);
    // Ends the read loop for good; a stop first tries an orderly close and only then aborts.
    private readonly CancellationTokenSource _abort = new();
    private Task<TransportEnd>? _reader;
    private long _nextId;

    public WebSocketTransport(HeraldClient client) : base(client)
    {
        _msgPack = client.Options.Protocol == HeraldProtocol.MsgPack;
        _socket.Options.AddSubProtocol(_msgPack ? "herald.msgpack" : "herald.json");
        _socket.Options.KeepAliveInterval = client.Options.WebSocketKeepAliveInterval;
        _socket.Options.KeepAliveTimeout = client.Options.WebSocketKeepAliveInterval;
    }

    public override HeraldTransport Kind => HeraldTransport.WebSocket;

    public override async Task OpenAsync(CancellationToken cancellationToken)
    {
        await _socket.ConnectAsync(Client.ResolveWebSocket(BaseUri), cancellationToken);
        _reader = Task.Run(ReadLoopAsync, CancellationToken.None);
        StopToken.Register(static state => _ = ((WebSocketTransport)state!).CloseAsync(), this);
        var token = await Client.GetTokenAsync(cancellationToken);
        try
        {
            // Client: the id this client polls with, so a move from polling ends its poll presence (not listed twice).
            await CommandAsync(new Command { Op = Ops.Connect, Token = token, Info = Client.Info, Client = Client.ClientId }, cancellationToken);
        }
        catch (HeraldConnectionException ex) when (_reader.IsCompleted)
        {
            var end = await _reader;
            throw new HeraldConnectionException(end.Reason, ex);
        }
    }

    protected override async Task<TransportEnd> RunCoreAsync()
    {
        if (_reader is null)
        {
            return new TransportEnd("not opened");
        }
        foreach (var subscription in Client.Subscriptions)
        {
            OnSubscribed(subscription);
        }
        return await _reader;
    }

    internal override void Break()
    {
        try
        {
            _socket.Abort();
        }
        catch (ObjectDisposedException)
        {
            // Disposed meanwhile: the connection is gone already.
        }
    }

    public override void OnSubscribed(HeraldSubscription subscription)
    {
        if (_requested.TryAdd(subscription.Channel, subscription))
        {
            _ = SubscribeAsync(subscription);
        }
    }

    private async Task SubscribeAsync(HeraldSubscription subscription)
    {
        for (var attempt = 0; ; attempt++)
        {
            // Read per attempt: the cursor is where the subscription stands now.
            var since = subscription.Position is { } p ? new SincePosition { Offset = p.Offset, Epoch = p.Epoch } : null;
            try
            {
                await SendCommandAsync(new Command { Op = Ops.Subscribe, Channel = subscription.Channel, Since = since }, subscription, StopToken);
                return;
            }
            catch (HeraldException ex) when (HeraldClient.IsTransientRefusal(ex))
            {
                // Say, many subscriptions resent at once after a reconnect, past the server's command rate: the
                // server will take it later, so the subscription stays and asks again after a backoff.
                var delay = HeraldClient.ComputeBackoff(
                    attempt, Client.Options.ReconnectMinDelay, Client.Options.ReconnectMaxDelay, Client.Options.ReconnectJitter, Random.Shared.NextDouble());
                try
                {
                    await Task.Delay(delay, StopToken);
                }
                catch (Exception ended) when (ended is OperationCanceledException or ObjectDisposedException)
                {
                    // The connection ended (or was disposed) during the wait; the next one subscribes again from the cursor.
                    return;
                }
                if (!_requested.TryGetValue(subscription.Channel, out var requested) || !ReferenceEquals(requested, subscription))
                {
                    return; // unsubscribed meanwhile
                }
            }
            catch (HeraldException ex)
            {
                _requested.TryRemove(new(subscription.Channel, subscription));
                Client.OnSubscriptionRefused(subscription, ex);
                return;
            }
            catch (Exception)
            {
                // The connection ended; the next one subscribes again from the cursor.
                return;
            }
        }
    }

    public override async ValueTask OnUnsubscribedAsync(HeraldSubscription subscription, CancellationToken cancellationToken)
    {
        _live.TryRemove(new(subscription.Channel, subscription));
        if (_requested.TryRemove(new(subscription.Channel, subscription)))
        {
            try
            {
                await CommandAsync(new Command { Op = Ops.Unsubscribe, Channel = subscription.Channel }, cancellationToken);
            }
            catch (HeraldException ex) when (ex.Code == ErrorCodes.NotSubscribed)
            {
            }
        }
    }

    public override Task<JsonElement> CommandAsync(Command command, CancellationToken cancellationToken) =>
        SendCommandAsync(command, null, cancellationToken);

    private async Task<JsonElement> SendCommandAsync(Command command, HeraldSubscription? subscription, CancellationToken cancellationToken)
    {
        var id = Interlocked.Increment(ref _nextId);
        command.Id = id;
        var pending = new Pending(subscription);
        _pending[id] = pending;
        try
        {
            var bytes = JsonSerializer.SerializeToUtf8Bytes(command, ClientJsonContext.Default.Command);
            if (_msgPack)
            {
                bytes = MsgPackCodec.FromJson(bytes, command: true);
            }
            await _sendLock.WaitAsync(cancellationToken);
            try
            {
                await _socket.SendAsync(bytes, _msgPack ? WebSocketMessageType.Binary : WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
            }
            catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException)
            {
                throw new HeraldConnectionException($"the WebSocket failed while sending '{command.Op}'", ex);
            }
            finally
            {
                _sendLock.Release();
            }
            return await pending.Reply.Task.WaitAsync(cancellationToken);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    private async Task<TransportEnd> ReadLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(16 * 1024);
        TransportEnd end;
        try
        {
            while (true)
            {
                buffer.ResetWrittenCount();
                ValueWebSocketReceiveResult received;
                do
                {
                    received = await _socket.ReceiveAsync(buffer.GetMemory(8 * 1024), _abort.Token);
                    buffer.Advance(received.Count);
                }
                while (!received.EndOfMessage && received.MessageType != WebSocketMessageType.Close);

                if (received.MessageType == WebSocketMessageType.Close && StopToken.IsCancellationRequested)
                {
                    end = new TransportEnd(StopReason);
                    break;
                }
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    var code = (int?)_socket.CloseStatus;
                    end = new TransportEnd(
                        $"closed {code}{(string.IsNullOrEmpty(_socket.CloseStatusDescription) ? "" : ": " + _socket.CloseStatusDescription)}",
                        null,
                        Fatal: code == CloseCodes.Unauthorized || (code is { } c && CloseCodes.IsNoReconnect(c)));
                    break;
                }
                await HandleFrameAsync(buffer.WrittenMemory);
            }
        }
        catch (Exception ex) when (StopToken.IsCancellationRequested)
        {
            end = new TransportEnd(StopReason, ex is OperationCanceledException or WebSocketException ? null : ex);
        }
        catch (Exception ex)
        {
            end = new TransportEnd($"WebSocket failed: {ex.Message}", ex);
        }
        var lost = new HeraldConnectionException($"the connection ended before the reply ({end.Reason})", end.Exception);
        foreach (var pending in _pending.Values)
        {
            pending.Reply.TrySetException(lost);
        }
        return end;
    }

    private async ValueTask HandleFrameAsync(ReadOnlyMemory<byte> frame)
    {
        if (_msgPack)
        {
            await HandleMsgPackFrameAsync(frame);
            return;
        }
        while (!frame.IsEmpty)
        {
            var newline = frame.Span.IndexOf((byte)'\n');
            var line = newline < 0 ? frame : frame[..newline];
            frame = newline < 0 ? ReadOnlyMemory<byte>.Empty : frame[(newline + 1)..];
            if (line.Span.Trim("\r "u8).IsEmpty)
            {
                continue;
            }
            var message = JsonSerializer.Deserialize(line.Span, ClientJsonContext.Default.ServerMessage)
                ?? throw new HeraldConnectionException("the server sent a JSON null");
            await HandleMessageAsync(message);
        }
    }

    private async ValueTask HandleMsgPackFrameAsync(ReadOnlyMemory<byte> frame)
    {
        while (!frame.IsEmpty)
        {
            if (!MsgPackCodec.TrySplit(frame, out var length, out var malformed)
                || !MsgPackCodec.TryToJsonServerMessage(frame[..length], out var json, out malformed))
            {
                throw new HeraldConnectionException($"the server sent bad MessagePack: {malformed}");
            }
            frame = frame[length..];
            var message = JsonSerializer.Deserialize(json, ClientJsonContext.Default.ServerMessage)
                ?? throw new HeraldConnectionException("the server sent a null message");
            await HandleMessageAsync(message);
        }
    }

    private async ValueTask HandleMessageAsync(ServerMessage message)
    {
        if (message.Push is { Channel: { } channel, Pub: { } pub })
        {
            if (_live.TryGetValue(channel, out var subscription) && Client.TryGetSubscription(channel, out var current) && ReferenceEquals(current, subscription))
            {
                await subscription.DeliverAsync(pub, null, StopToken);
            }
            return;
        }
        if (message.Push is { Channel: { } skippedIn, Skipped: { } skipped })
        {
            if (_live.TryGetValue(skippedIn, out var subscription) && Client.TryGetSubscription(skippedIn, out var current) && ReferenceEquals(current, subscription))
            {
                subscription.Skip(skipped, null);
            }
            return;
        }
        if (message.Push is { Channel: { } subscribedTo, Subscribe: { } position })
        {
            // Applied here, on the read loop, like a subscribe reply: the recovered publications go out before any later push.
            var subscription = await Client.OnServerSubscribedAsync(subscribedTo, position, StopToken);
            _requested[subscribedTo] = subscription;
            _live[subscribedTo] = subscription;
            return;
        }
        if (message.Push is { Channel: { } unsubscribedFrom, Unsubscribe: { } unsubscribed })
        {
            _requested.TryRemove(unsubscribedFrom, out _);
            _live.TryRemove(unsubscribedFrom, out _);
            Client.OnServerUnsubscribed(unsubscribedFrom, unsubscribed.Reason);
            return;
        }
        if (message.Id is not { } id || !_pending.TryGetValue(id, out var pending))
        {
            return;
        }
        if (message.Error is { } error)
        {
            pending.Reply.TrySetException(ToException(error));
            return;
        }
        var result = message.Result ?? default;
        if (pending.Subscription is { } subscribed)
        {
            // Applied here, on the read loop, so that the recovered publications go out before any later push.
            var stream = result.Deserialize(ClientJsonContext.Default.StreamResultMessage)
                ?? throw new HeraldConnectionException("a subscribe reply without a result");
            if (_requested.TryGetValue(subscribed.Channel, out var requested) && ReferenceEquals(requested, subscribed))
            {
                await subscribed.ApplyAsync(stream, StopToken);
                _live[subscribed.Channel] = subscribed;
                subscribed.MarkReady();
            }
        }
        pending.Reply.TrySetResult(result);
    }

    /// <summary>
    /// Sends a close frame and gives the server a moment to answer; the read loop keeps delivering until the
    /// answer arrives. An orderly close lets the server drop the connection's state at once instead of timing it out.
    /// </summary>
    private async Task CloseAsync()
    {
        try
        {
            if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
                if (_reader is not null)
                {
                    await _reader.WaitAsync(timeout.Token);
                }
            }
        }
        catch (Exception)
        {
            // No answer in time, or the socket already failed: abort below.
        }
        finally
        {
            try
            {
                _abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Disposed meanwhile: the socket is gone already.
            }
        }
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _abort.Cancel();
        if (_reader is not null)
        {
            await _reader;
        }
        _socket.Dispose();
        _sendLock.Dispose();
        _abort.Dispose();
    }

    private sealed class Pending(HeraldSubscription? subscription)
    {
        public HeraldSubscription? Subscription { get; } = subscription;

        public TaskCompletionSource<JsonElement> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
