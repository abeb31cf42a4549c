using Herald.Protocol;
using Microsoft.Extensions.Logging;

namespace Herald.Sessions;

/// <summary>
/// The protocol state of one persistent connection: connect, subscriptions and command handling. Transport
/// independent: a transport hands it frames and writes out what it queues in <see cref="Outbound"/>.
/// </summary>
/// <remarks>Commands of one session are handled one at a time, in order, so replies keep the order of commands.</remarks>
internal sealed partial class ClientSession : IOutboundQueueOwner
{
    private readonly ISessionTransport _transport;
    private SubscriptionSet _subscriptions;
    private readonly Lock _gate = new();
    private readonly ILogger _logger;
    private ClientInfo? _client;
    // The id this client polls with, from `connect`; set before _client is published, read after.
    private string? _pollClientId;
    private AuthenticationResult? _auth;
    private ITimer? _expiry;
    private bool _terminated;
    private bool _listedAsUser;
    private RateBucket _commands;
    private RateBucket _publishes;

    /// <summary>Creates a session for a new connection.</summary>
    public ClientSession(HeraldNode node, ISessionTransport transport)
    {
        Node = node ?? throw new ArgumentNullException(nameof(node));
        _transport = transport ?? throw new ArgumentNullException(nameof(transport));
        _logger = node.SessionLogger;
        ClientId = node.NewClientId();
        Encoding = transport.Encoding;
        Outbound = new OutboundQueue(node.Options.MaxQueuedMessages, node.Options.MaxQueuedBytes, this);
        _commands = new RateBucket(node.Options.MaxCommandsPerSecond);
        _publishes = new RateBucket(node.Options.MaxPublishesPerSecond);
    }

    /// <summary>The node this session lives on.</summary>
    public HeraldNode Node { get; }

    /// <summary>The server-assigned id of this connection.</summary>
    public string ClientId { get; }

    /// <summary>How the connection encodes messages.</summary>
    public WireEncoding Encoding { get; }

    /// <summary>What waits to be written to the connection.</summary>
    public OutboundQueue Outbound { get; }

    /// <summary>Whether <c>connect</c> succeeded.</summary>
    public bool IsConnected => Volatile.Read(ref _client) is not null;

    /// <summary>How many channels the session is subscribed to.</summary>
    public int SubscriptionCount
    {
        get
        {
            lock (_gate)
            {
                return _subscriptions.Count;
            }
        }
    }

    /// <summary>
    /// Handles one inbound message: one or more commands separated by <c>\n</c> (<c>herald.json</c>), or MessagePack maps
    /// back to back (<c>herald.msgpack</c>).
    /// </summary>
    public async ValueTask HandleMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default)
    {
        if (Encoding == WireEncoding.MsgPack)
        {
            await HandleMsgPackAsync(message, cancellationToken);
            return;
        }
        while (!message.IsEmpty && !_terminated)
        {
            var newline = message.Span.IndexOf((byte)'\n');
            var line = newline < 0 ? message : message[..newline];
            message = newline < 0 ? ReadOnlyMemory<byte>.Empty : message[(newline + 1)..];
            if (!line.IsEmpty && line.Span[^1] == (byte)'\r')
            {
                line = line[..^1];
            }
            if (line.Span.Trim(" \t"u8).IsEmpty)
            {
                continue;
            }
            await HandleCommandAsync(line, cancellationToken);
        }
    }

    private async ValueTask HandleMsgPackAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        while (!frame.IsEmpty && !_terminated)
        {
            if (!MsgPackCodec.TrySplit(frame, out var length, out var malformed))
            {
                // Nothing after a value that does not end can be found again: the rest of the frame is dropped.
                RefuseUnreadable(null, malformed!);
                return;
            }
            var message = frame[..length];
            frame = frame[length..];
            if (!MsgPackCodec.TryToJsonCommand(message, out var json, out var invalid, out var id))
            {
                RefuseUnreadable(id, invalid!);
                continue;
            }
            await HandleCommandAsync(json, cancellationToken);
        }
    }

    /// <summary>
    /// Queues a JSON message (as <see cref="ProtocolWriter"/> writes it) for the connection, converted to its encoding;
    /// returns <see langword="false"/> when the queue refused it.
    /// </summary>
    public bool Enqueue(ReadOnlyMemory<byte> message, Subscription? source = null, ulong offset = 0) =>
        Outbound.TryEnqueue(Encoding == WireEncoding.MsgPack ? MsgPackCodec.FromJson(message) : message, 0, source, offset);

    /// <summary>Ends the session: drops its subscriptions and presence. Safe to call more than once.</summary>
    public async ValueTask TerminateAsync()
    {
        Subscription[] subscriptions;
        lock (_gate)
        {
            if (_terminated)
            {
                return;
            }
            _terminated = true;
            subscriptions = _subscriptions.TakeAll();
            if (_listedAsUser)
            {
                Node.RemoveUserSession(_client!.User, this);
            }
        }
        Outbound.Discard();
        _expiry?.Dispose();
        foreach (var subscription in subscriptions)
        {
            await DropSubscriptionAsync(subscription);
        }
    }

    /// <summary>
    /// Tells the application's handlers that this connection, if it had connected, ended with <paramref name="code"/>.
    /// Returns at once; the handlers run on their own.
    /// </summary>
    public void NotifyDisconnected(int code, string reason)
    {
        if (Node.Handlers.HandlesDisconnect && Volatile.Read(ref _client) is { } client)
        {
            Node.Handlers.NotifyDisconnect(new Handlers.DisconnectContext(client, _transport.Name, code, reason));
        }
    }

    /// <summary>Closes the connection with 4005 when its token expires, unless a refresh moves the deadline.</summary>
    private void ScheduleExpiry(DateTimeOffset? expiresAt)
    {
        _expiry?.Dispose();
        _expiry = null;
        if (expiresAt is not { } at)
        {
            return;
        }
        // The same skew that validation tolerates, so a token accepted moments after its exp is not dropped at once.
        var due = at + Node.Options.Token.ClockSkew - Node.TimeProvider.GetUtcNow();
        if (due > MaxTimerDue)
        {
            // A timer cannot wait longer than about 49.7 days (a token valid for a year would fail connect): wait that
            // long, then arm again for what is left, unless a refresh has replaced this expiry meanwhile.
            ITimer? rearm = null;
            rearm = Node.TimeProvider.CreateTimer(
                state =>
                {
                    var session = (ClientSession)state!;
                    if (ReferenceEquals(Volatile.Read(ref session._expiry), rearm))
                    {
                        session.ScheduleExpiry(at);
                    }
                },
                this, MaxTimerDue, Timeout.InfiniteTimeSpan);
            _expiry = rearm;
            return;
        }
        _expiry = Node.TimeProvider.CreateTimer(
            static state => ((ClientSession)state!)._transport.Close(CloseCodes.TokenExpired, "token expired"),
            this, due > TimeSpan.Zero ? due : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The longest wait a <see cref="ITimer"/> accepts.</summary>
    private static readonly TimeSpan MaxTimerDue = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    /// <summary>Closes the connection for the server (<c>IHeraldServer.DisconnectAsync</c>): what is queued goes out first.</summary>
    internal void Disconnect(int code, string reason) => _transport.Close(code, reason);

    void IOutboundQueueOwner.Overflowed() => OnSlowConsumer();

    void IOutboundQueueOwner.Queued() => _transport.Queued();

    internal void OnSlowConsumer()
    {
        Node.Metrics.SlowConsumerClosed();
        Log.SlowConsumer(_logger, ClientId, Outbound.QueuedBytes);
        Outbound.Discard();
        _transport.Close(CloseCodes.SlowConsumer, "slow consumer: outbound queue full");
    }

    internal void OnInsufficientState(string reason)
    {
        Log.InsufficientState(_logger, ClientId, reason);
        _transport.Close(CloseCodes.InsufficientState, "insufficient state, resubscribe with since");
    }

    private async ValueTask DropSubscriptionAsync(Subscription subscription)
    {
        subscription.Close();
        if (_client is { } client)
        {
            try
            {
                await Node.Channels.LeaveAsync(subscription.Channel, subscription.Namespace, client);
            }
            catch (Exception ex)
            {
                // The presence store is down; the entry expires with this node's heartbeat if it never comes back.
                Log.PresenceLeaveFailed(_logger, ClientId, subscription.Channel, ex);
            }
        }
        await Node.RemoveSubscriptionAsync(subscription);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "Client {ClientId} closed as a slow consumer ({QueuedBytes} bytes queued)")]
        public static partial void SlowConsumer(ILogger logger, string clientId, long queuedBytes);

        // Debug: the causes are a channel's, not the client's (an epoch change, offsets lost on their way to the node, a
        // fan-out backlog dropped, which the node logs once as a warning), and every subscriber of the channel on the node
        // sees them at once; a warning per client would be thousands of lines, written while the node is overloaded.
        [LoggerMessage(EventId = 201, Level = LogLevel.Debug, Message = "Client {ClientId} closed: {Reason}")]
        public static partial void InsufficientState(ILogger logger, string clientId, string reason);

        [LoggerMessage(EventId = 203, Level = LogLevel.Warning, Message = "Client {ClientId}: leaving presence of {Channel} failed")]
        public static partial void PresenceLeaveFailed(ILogger logger, string clientId, string channel, Exception exception);

        [LoggerMessage(EventId = 202, Level = LogLevel.Error, Message = "Client {ClientId}: command {Op} failed")]
        public static partial void CommandFailed(ILogger logger, string clientId, string? op, Exception exception);

        [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "Client {ClientId}: catching up on {Channel} failed")]
        public static partial void CatchUpFailed(ILogger logger, string clientId, string channel, Exception exception);
    }
}
