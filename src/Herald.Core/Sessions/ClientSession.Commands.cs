using Herald.Brokers;
using Herald.Channels;
using Herald.Handlers;
using Herald.Presence;
using Herald.Protocol;
using System.Text.Json;

namespace Herald.Sessions;

internal sealed partial class ClientSession
{
    private static readonly string ServerVersion =
        typeof(ClientSession).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private async ValueTask HandleCommandAsync(ReadOnlyMemory<byte> line, CancellationToken cancellationToken)
    {
        // Every line counts against the command rate, parseable or not, so garbage cannot flood past the limit.
        var withinRate = _commands.TryTake();
        if (!CommandParser.TryParse(line.Span, out var command, out var parseError, out var id))
        {
            Reply(withinRate
                ? CommandOutcome.Failed(id, ErrorCodes.BadRequest, parseError!)
                : CommandOutcome.Failed(id, ErrorCodes.RateLimited, $"more than {Node.Options.MaxCommandsPerSecond} commands per second"));
            return;
        }
        if (!withinRate || (command.Op == Ops.Publish && !_publishes.TryTake()))
        {
            Reply(CommandOutcome.Failed(command.Id, ErrorCodes.RateLimited, command.Op == Ops.Publish
                ? $"more than {Node.Options.MaxPublishesPerSecond} publishes per second"
                : $"more than {Node.Options.MaxCommandsPerSecond} commands per second"));
            return;
        }
        CommandOutcome outcome;
        try
        {
            outcome = await DispatchAsync(command, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
        catch (BrokerUnavailableException)
        {
            outcome = CommandOutcome.Failed(command.Id, ErrorCodes.Unavailable, "the broker cannot be reached");
        }
        catch (Exception ex)
        {
            Log.CommandFailed(_logger, ClientId, command.Op, ex);
            outcome = CommandOutcome.Failed(command.Id, ErrorCodes.Internal, "the server failed to handle the command");
        }
        if (outcome.Reply is not null)
        {
            Reply(outcome);
        }
    }

    /// <summary>Answers a message that is not a command at all; it counts against the command rate like any other.</summary>
    private void RefuseUnreadable(long? id, string problem) =>
        Reply(_commands.TryTake()
            ? CommandOutcome.Failed(id, ErrorCodes.BadRequest, problem)
            : CommandOutcome.Failed(id, ErrorCodes.RateLimited, $"more than {Node.Options.MaxCommandsPerSecond} commands per second"));

    private void Reply(CommandOutcome outcome)
    {
        Node.Metrics.CommandHandled(failed: outcome.Error is not null);
        Enqueue(outcome.Reply!);
    }

    private ValueTask<CommandOutcome> DispatchAsync(Command command, CancellationToken cancellationToken)
    {
        if (command.Op == Ops.Connect)
        {
            return ConnectAsync(command, cancellationToken);
        }
        if (Volatile.Read(ref _client) is not { } client)
        {
            return Done(CommandOutcome.Failed(command.Id, ErrorCodes.NotConnected, $"send 'connect' before '{command.Op}'"));
        }
        var auth = _auth!;
        return command.Op switch
        {
            Ops.Subscribe => SubscribeAsync(command, client, auth, cancellationToken),
            Ops.Refresh => RefreshAsync(command, cancellationToken),
            Ops.Unsubscribe => UnsubscribeAsync(command),
            _ => ChannelCommands.DispatchAsync(Node.Channels, Node.Handlers, _transport.Name, auth, client, command, cancellationToken),
        };

        static ValueTask<CommandOutcome> Done(CommandOutcome outcome) => ValueTask.FromResult(outcome);
    }

    private async ValueTask<CommandOutcome> ConnectAsync(Command command, CancellationToken cancellationToken)
    {
        if (IsConnected)
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.AlreadyConnected, "this connection is already connected");
        }
        var auth = await Node.Authenticator.AuthenticateAsync(command.Token, cancellationToken);
        if (Node.Handlers.HandlesConnect)
        {
            var decided = await Node.Handlers.ConnectAsync(
                new ConnectContext(ClientId, _transport.Name, command.Token, auth, _transport.Headers, _transport.RemoteAddress), cancellationToken);
            if (!decided.TryGetValue(out var replaced, out var refusal))
            {
                Reply(CommandOutcome.Failed(command.Id, refusal));
                // A refusal is final (4003, the client does not retry); a handler that failed or timed out is not.
                if (refusal.Code is ErrorCodes.Internal or ErrorCodes.Unavailable)
                {
                    _transport.Close(CloseCodes.InternalError, "the application failed to handle connect");
                }
                else
                {
                    _transport.Close(CloseCodes.Unauthorized, refusal.Code);
                }
                return CommandOutcome.Succeeded(null);
            }
            auth = replaced;
        }
        // The token's info is trusted and wins; the client's own is then ignored, so it is not checked either.
        if (auth.Succeeded && auth.Info is null && command.Info is { } offered && ClientInfoRules.Check(offered, Node.Options) is { } problem)
        {
            return CommandOutcome.Failed(command.Id, problem.Code, problem.Message);
        }
        if (command.Client is { } pollId && !ClientInfoRules.IsValidClientId(pollId))
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.BadRequest, $"'client' must be 1 to {ClientInfoRules.MaxClientIdLength} characters of A-Z a-z 0-9 _ -");
        }
        if (!auth.Succeeded)
        {
            Reply(CommandOutcome.Failed(command.Id, ErrorCodes.Unauthorized, auth.Error ?? "unauthorized"));
            _transport.Close(CloseCodes.Unauthorized, "unauthorized");
            return CommandOutcome.Succeeded(null);
        }
        var client = new ClientInfo(auth.User, ClientId) { Info = ClientInfoRules.Effective(auth.Info, command.Info) };
        _auth = auth;
        _pollClientId = command.Client;
        Volatile.Write(ref _client, client);
        lock (_gate)
        {
            // Under the gate with TerminateAsync: a session that already ended is never listed.
            if (!_terminated && client.User.Length > 0)
            {
                Node.AddUserSession(client.User, this);
                _listedAsUser = true;
            }
        }
        ScheduleExpiry(auth.ExpiresAt);
        _transport.Connected();
        return CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, (client, Node.Options.KeepAliveInterval), static (w, s) =>
        {
            w.WriteString(ProtocolNames.Client, s.client.Client);
            w.WriteString(ProtocolNames.User, s.client.User);
            w.WriteString(ProtocolNames.Version, ServerVersion);
            w.WriteNumber(ProtocolNames.Ping, (int)s.KeepAliveInterval.TotalSeconds);
        }));
    }

    /// <summary>
    /// Connects a stream whose request was already authenticated (and seen by the connect handlers) at the edge, as
    /// <c>GET /sse</c> is, and queues <c>{"connected":{…}}</c>, the stream's first message (what <c>connect</c> answers).
    /// </summary>
    /// <param name="auth">A successful authentication.</param>
    /// <param name="info">The client's own display info, already checked; ignored when the token carries one.</param>
    /// <param name="pollClientId">The id the client polls with, if it gave one (presence counts it once).</param>
    internal void ConnectStream(AuthenticationResult auth, JsonElement? info, string? pollClientId)
    {
        var client = new ClientInfo(auth.User, ClientId) { Info = ClientInfoRules.Effective(auth.Info, info) };
        _auth = auth;
        _pollClientId = pollClientId;
        Volatile.Write(ref _client, client);
        lock (_gate)
        {
            if (!_terminated && client.User.Length > 0)
            {
                Node.AddUserSession(client.User, this);
                _listedAsUser = true;
            }
        }
        ScheduleExpiry(auth.ExpiresAt);
        Enqueue(ProtocolWriter.Write((client, Node.Options.KeepAliveInterval), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteStartObject(ProtocolNames.Connected);
            w.WriteString(ProtocolNames.Client, s.client.Client);
            w.WriteString(ProtocolNames.User, s.client.User);
            w.WriteString(ProtocolNames.Version, ServerVersion);
            w.WriteNumber(ProtocolNames.Ping, (int)s.KeepAliveInterval.TotalSeconds);
            w.WriteEndObject();
            w.WriteEndObject();
        }));
    }

    /// <summary>
    /// Subscribes a stream (connected with <see cref="ConnectStream"/>) to <paramref name="channel"/> by the rules of the
    /// <c>subscribe</c> command, queuing <c>{"subscribed":{"channel":…,"epoch":…,"offset":…,"recovered":…,"publications":[…]}}</c>
    /// (what <c>subscribe</c> answers, naming its channel) before the channel's pushes. Returns the refusal, if any.
    /// </summary>
    internal async ValueTask<HeraldError?> SubscribeStreamAsync(string channel, StreamPosition? since, CancellationToken cancellationToken)
    {
        var auth = _auth!;
        if (!Node.Channels.ResolveForRead(auth, channel, "subscribing to").TryGetValue(out var ns, out var refused))
        {
            return refused;
        }
        return await SubscribeCoreAsync(channel, ns, since, _client!, auth, (recovered, attached) => ProtocolWriter.Write((channel, recovered, attached), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteStartObject(ProtocolNames.Subscribed);
            w.WriteString(ProtocolNames.Channel, s.channel);
            WriteRecovered(w, s.recovered, s.attached);
            w.WriteEndObject();
            w.WriteEndObject();
        }), cancellationToken);
    }

    private async ValueTask<CommandOutcome> RefreshAsync(Command command, CancellationToken cancellationToken)
    {
        if (command.Token is null)
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.BadRequest, "the field 'token' is required");
        }
        var auth = await Node.Authenticator.AuthenticateAsync(command.Token, cancellationToken);
        if (!auth.Succeeded)
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.Unauthorized, auth.Error ?? "unauthorized");
        }
        if (auth.User != _client!.User)
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.Unauthorized, "a refreshed token must be for the same user");
        }
        _auth = auth;
        ScheduleExpiry(auth.ExpiresAt);
        return CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, auth.ExpiresAt, static (w, e) =>
        {
            if (e is { } expires)
            {
                w.WriteNumber("expires", expires.ToUnixTimeSeconds());
            }
        }));
    }

    private async ValueTask<CommandOutcome> SubscribeAsync(Command command, ClientInfo client, AuthenticationResult auth, CancellationToken cancellationToken)
    {
        if (!Node.Channels.ResolveForRead(auth, command.Channel, "subscribing to").TryGetValue(out var ns, out var refused))
        {
            return CommandOutcome.Failed(command.Id, refused);
        }
        StreamPosition? since = command.Since is { } s ? new StreamPosition(s.Offset!.Value, s.Epoch!) : null;
        var id = command.Id;
        var error = await SubscribeCoreAsync(command.Channel!, ns, since, client, auth, (recovered, attached) =>
        {
            Node.Metrics.CommandHandled(failed: false); // the reply is queued by the subscription, not by the command loop
            return ProtocolWriter.EncodeResult(id, (recovered, attached), static (w, s) => WriteRecovered(w, s.recovered, s.attached));
        }, cancellationToken);
        return error is null ? CommandOutcome.Succeeded(null) : CommandOutcome.Failed(command.Id, error);
    }

    /// <summary>
    /// Subscribes this connection to a channel for the server (<c>IHeraldServer.SubscribeAsync</c>): no permission check,
    /// and the connection learns of it by a subscribe push instead of a reply. Already subscribed: nothing happens.
    /// </summary>
    /// <returns>The refusal (too many subscriptions, a cursor beyond the head, the broker unavailable), or <see langword="null"/>.</returns>
    internal async ValueTask<HeraldError?> ServerSubscribeAsync(string channel, NamespaceOptions ns, StreamPosition? since, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _client) is not { } client)
        {
            return null;
        }
        lock (_gate)
        {
            if (_subscriptions.ContainsKey(channel))
            {
                return null;
            }
        }
        try
        {
            var error = await SubscribeCoreAsync(channel, ns, since, client, auth: null, (recovered, _) => ProtocolWriter.Write((channel, recovered), static (w, s) =>
            {
                w.WriteStartObject();
                w.WriteStartObject(ProtocolNames.Push);
                w.WriteString(ProtocolNames.Channel, s.channel);
                w.WriteStartObject(ProtocolNames.Subscribe);
                WriteRecovered(w, s.recovered, null);
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndObject();
            }), cancellationToken);
            return error is { Code: ErrorCodes.AlreadySubscribed } ? null : error;
        }
        catch (BrokerUnavailableException)
        {
            return new HeraldError(ErrorCodes.Unavailable, "the broker cannot be reached");
        }
    }

    /// <summary>
    /// Unsubscribes this connection from a channel for the server: it leaves the channel's presence and gets an
    /// unsubscribe push. Not subscribed: nothing happens.
    /// </summary>
    internal async ValueTask ServerUnsubscribeAsync(string channel, string reason)
    {
        Subscription? subscription;
        lock (_gate)
        {
            if (_terminated || !_subscriptions.Remove(channel, out subscription))
            {
                return;
            }
        }
        // Closed before the push is queued, so no publication of the channel follows the push.
        subscription.Close();
        Enqueue(ProtocolWriter.Write((channel, reason), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteStartObject(ProtocolNames.Push);
            w.WriteString(ProtocolNames.Channel, s.channel);
            w.WriteStartObject(ProtocolNames.Unsubscribe);
            w.WriteString(ProtocolNames.Reason, s.reason);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }));
        await DropSubscriptionAsync(subscription);
    }

    /// <summary>
    /// The subscribe steps shared by the client's <c>subscribe</c> and the server's: register for live publications,
    /// read history after <paramref name="since"/>, join presence, then queue what <paramref name="encode"/> makes of the
    /// recovery (a reply, or a push) followed by the publications buffered meanwhile. The application's subscribe handlers
    /// are asked when <paramref name="auth"/> is a client's credentials; a <see langword="null"/> one is the server
    /// subscribing the connection, which the application decided already.
    /// </summary>
    /// <returns>The refusal, or <see langword="null"/> once subscribed (or when the session ended meanwhile).</returns>
    private async ValueTask<HeraldError?> SubscribeCoreAsync(string channel, NamespaceOptions ns, StreamPosition? since, ClientInfo client, AuthenticationResult? auth, Func<RecoveryResult, JsonElement?, byte[]> encode, CancellationToken cancellationToken)
    {
        var subscription = new Subscription(this, channel, ns);
        lock (_gate)
        {
            if (_terminated)
            {
                return null;
            }
            if (_subscriptions.ContainsKey(channel))
            {
                return new HeraldError(ErrorCodes.AlreadySubscribed, $"already subscribed to {channel}");
            }
            if (_subscriptions.Count >= Node.Options.MaxSubscriptionsPerConnection)
            {
                return new HeraldError(ErrorCodes.TooManySubscriptions, $"a connection may hold at most {Node.Options.MaxSubscriptionsPerConnection} subscriptions");
            }
            _subscriptions.Add(subscription);
        }

        JsonElement? attached = null;
        if (auth is not null && Node.Handlers.HandlesSubscribe)
        {
            HeraldResult<SubscribeAccepted> allowed;
            try
            {
                allowed = await Node.Handlers.SubscribeAsync(new SubscribeContext(client, _transport.Name, channel, auth), cancellationToken);
            }
            catch
            {
                Unreserve(channel, subscription);
                throw;
            }
            if (!allowed.TryGetValue(out var accepted, out var refusal))
            {
                Unreserve(channel, subscription);
                return refusal;
            }
            attached = accepted.Data;
        }

        // Register for live publications first and read history second; the subscription buffers what arrives
        // meanwhile and Activate() drops what the history already covered.
        HeraldResult<RecoveryResult> recovery;
        try
        {
            await Node.AddSubscriptionAsync(subscription, cancellationToken);
            // Bounded like every read: what does not fit follows the reply (or subscribe push) as pushes (CatchUpAsync).
            recovery = await Node.Channels.RecoverAsync(channel, ns, since, Node.Options.MaxHistoryLimit, cancellationToken);
            if (recovery.Error is null)
            {
                await Node.Channels.JoinAsync(channel, ns, client, _pollClientId, cancellationToken);
            }
        }
        catch
        {
            await RemoveAsync(subscription);
            throw;
        }
        if (!recovery.TryGetValue(out var recovered, out var error))
        {
            await RemoveAsync(subscription);
            return error;
        }
        if (!Start(subscription, encode(recovered, attached), recovered))
        {
            // Closed while being set up: undo the presence join and the node's registration made above, and answer so
            // that a client's subscribe never waits for a reply that will not come.
            await DropSubscriptionAsync(subscription);
            return new HeraldError(ErrorCodes.NotSubscribed, $"the subscription to {channel} ended while it was being set up");
        }
        return null;
    }

    /// <summary>
    /// Writes a subscribe answer's fields: position, <c>recovered</c> when a cursor was given, publications, and the
    /// data a subscribe handler attached.
    /// </summary>
    private static void WriteRecovered(Utf8JsonWriter w, RecoveryResult r, JsonElement? attached)
    {
        ChannelCommands.WritePosition(w, r.Position);
        if (r.Recovered is { } done)
        {
            w.WriteBoolean(ProtocolNames.Recovered, done);
        }
        ProtocolWriter.WritePublications(w, r.Publications);
        if (r.Skipped is { } skipped)
        {
            ProtocolWriter.WriteSkipped(w, skipped);
        }
        if (attached is { } data)
        {
            // Re-encoded, never copied raw, so that the application's whitespace cannot put a newline in a frame.
            w.WritePropertyName(ProtocolNames.Data);
            data.WriteTo(w);
        }
    }

    /// <summary>
    /// Queues the subscribe reply or push and makes the subscription live; when the limit cut the recovery, the reply holds
    /// the first page and the rest follows it as pushes, in order, before any live publication (in the background, so the
    /// connection's other commands are not held up). <see langword="false"/> when the subscription was closed meanwhile.
    /// </summary>
    private bool Start(Subscription subscription, byte[] message, RecoveryResult recovered)
    {
        if (recovered.Recovered != true || recovered.Position.Offset >= recovered.Head.Offset)
        {
            return subscription.Activate(message, recovered.Position);
        }
        var stop = new CancellationTokenSource();
        if (!subscription.BeginCatchUp(message, recovered.Position, stop))
        {
            stop.Dispose();
            return false;
        }
        _ = CatchUpAsync(subscription, stop);
        return true;
    }

    /// <summary>
    /// Queues, page by page (<c>Herald:MaxHistoryLimit</c> each), the publications a subscriber missed past the first
    /// page its reply carried, pacing itself by the connection's writer, then makes the subscription live. Anything that
    /// stops it short (the history window moved past the cursor, a new epoch, the broker unavailable) closes the
    /// connection with 4004, so the client resubscribes from what it got and is told what is lost: never a silent gap.
    /// </summary>
    private async Task CatchUpAsync(Subscription subscription, CancellationTokenSource stopSource)
    {
        var stop = stopSource.Token;
        try
        {
            while (!subscription.TryGoLive(atHead: false))
            {
                var from = subscription.CaughtUpTo;
                var read = await Node.Channels.RecoverAsync(subscription.Channel, subscription.Namespace, from, Node.Options.MaxHistoryLimit, stop);
                if (!read.TryGetValue(out var page, out var error) || page.Recovered != true)
                {
                    subscription.Close();
                    OnInsufficientState(error is null
                        ? $"channel {subscription.Channel}: publications after {from.Offset} left history while catching up"
                        : $"channel {subscription.Channel}: catching up failed: {error.Code}");
                    return;
                }
                foreach (var publication in page.Publications)
                {
                    await Outbound.WaitForRoomAsync(stop);
                    if (!subscription.CatchUp(publication))
                    {
                        return;
                    }
                }
                if (page.Position.Offset >= page.Head.Offset)
                {
                    // Read up to the head: every later publication was registered for, so the buffer holds it.
                    subscription.TryGoLive(atHead: true);
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Unsubscribed, or the connection ended.
        }
        catch (Exception ex)
        {
            subscription.Close();
            Log.CatchUpFailed(_logger, ClientId, subscription.Channel, ex);
            OnInsufficientState($"channel {subscription.Channel}: catching up failed");
        }
        finally
        {
            subscription.EndCatchUp();
            stopSource.Dispose();
        }
    }

    private async ValueTask<CommandOutcome> UnsubscribeAsync(Command command)
    {
        if (Herald.Channels.ChannelService.Resolve(command.Channel, Node.Options).Error is { } invalid)
        {
            return CommandOutcome.Failed(command.Id, invalid);
        }
        Subscription? subscription;
        lock (_gate)
        {
            if (_subscriptions.Remove(command.Channel!, out subscription) is false)
            {
                subscription = null;
            }
        }
        if (subscription is null)
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.NotSubscribed, $"not subscribed to {command.Channel}");
        }
        await DropSubscriptionAsync(subscription);
        return CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, 0, static (_, _) => { }));
    }

    // A subscription refused before it reached the node: only its place in the table is taken back.
    private void Unreserve(string channel, Subscription subscription)
    {
        lock (_gate)
        {
            if (_subscriptions.TryGetValue(channel, out var reserved) && ReferenceEquals(reserved, subscription))
            {
                _subscriptions.Remove(channel, out _);
            }
        }
    }

    private async ValueTask RemoveAsync(Subscription subscription)
    {
        lock (_gate)
        {
            _subscriptions.Remove(subscription.Channel, out _);
        }
        subscription.Close();
        await Node.RemoveSubscriptionAsync(subscription);
    }
}
