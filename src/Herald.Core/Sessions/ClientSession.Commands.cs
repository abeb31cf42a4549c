using Herald.Presence;
using Herald.Protocol;

namespace Herald.Sessions;

public sealed partial class ClientSession
{
    private static readonly string ServerVersion =
        typeof(ClientSession).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private async ValueTask HandleCommandAsync(ReadOnlyMemory<byte> line, CancellationToken cancellationToken)
    {
        // Every line counts against the command rate, parseable or not, so garbage cannot flood past the limit.
        var withinRate = TryTake(_commands);
        if (!CommandParser.TryParse(line.Span, out var command, out var parseError, out var id))
        {
            Reply(ProtocolWriter.EncodeError(id, withinRate ? ErrorCodes.BadRequest : ErrorCodes.RateLimited, withinRate ? parseError! : $"more than {Node.Options.MaxCommandsPerSecond} commands per second"), failed: true);
            return;
        }
        if (!withinRate || (command.Op == Ops.Publish && !TryTake(_publishes)))
        {
            Reply(ChannelCommands.Error(command, ErrorCodes.RateLimited, command.Op == Ops.Publish
                ? $"more than {Node.Options.MaxPublishesPerSecond} publishes per second"
                : $"more than {Node.Options.MaxCommandsPerSecond} commands per second"), failed: true);
            return;
        }
        byte[]? reply;
        try
        {
            reply = await DispatchAsync(command, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex)
        {
            Log.CommandFailed(_logger, ClientId, command.Op, ex);
            reply = ProtocolWriter.EncodeError(command.Id, ErrorCodes.Internal, "the server failed to handle the command");
        }
        if (reply is not null)
        {
            Reply(reply, failed: ProtocolWriter.IsErrorReply(reply));
        }
    }

    private void Reply(byte[] reply, bool failed)
    {
        Node.Metrics.CommandHandled(failed);
        Enqueue(reply);
    }

    /// <summary>Returns the reply to queue, or <see langword="null"/> when the handler queued it itself.</summary>
    private ValueTask<byte[]?> DispatchAsync(Command command, CancellationToken cancellationToken)
    {
        if (command.Op == Ops.Connect)
        {
            return ConnectAsync(command, cancellationToken);
        }
        if (Volatile.Read(ref _client) is not { } client)
        {
            return Reply(ChannelCommands.Error(command, ErrorCodes.NotConnected, $"send 'connect' before '{command.Op}'"));
        }
        var auth = _auth!;
        return command.Op switch
        {
            Ops.Subscribe => SubscribeAsync(command, client, auth, cancellationToken),
            Ops.Refresh => RefreshAsync(command, cancellationToken),
            Ops.Unsubscribe => UnsubscribeAsync(command),
            Ops.Publish => Wrap(ChannelCommands.PublishAsync(Node, auth, client, command, cancellationToken)),
            Ops.History => Wrap(ChannelCommands.HistoryAsync(Node, auth, command, cancellationToken)),
            Ops.Presence => Reply(ChannelCommands.Presence(Node, auth, command)),
            Ops.Ping => Reply(ProtocolWriter.EncodeResult(command.Id, 0, static (_, _) => { })),
            _ => Reply(ChannelCommands.Error(command, ErrorCodes.UnknownOp, $"unknown op '{command.Op}'")),
        };

        static ValueTask<byte[]?> Reply(byte[] reply) => ValueTask.FromResult<byte[]?>(reply);

        static async ValueTask<byte[]?> Wrap(ValueTask<byte[]> pending) => await pending;
    }

    private async ValueTask<byte[]?> ConnectAsync(Command command, CancellationToken cancellationToken)
    {
        if (IsConnected)
        {
            return ChannelCommands.Error(command, ErrorCodes.AlreadyConnected, "this connection is already connected");
        }
        var auth = await Node.Authenticator.AuthenticateAsync(command.Token, cancellationToken);
        // The token's info is trusted and wins; the client's own is then ignored, so it is not checked either.
        if (auth.Succeeded && auth.Info is null && command.Info is { } offered && ClientInfoRules.Check(offered, Node.Options) is { } problem)
        {
            return ChannelCommands.Error(command, problem.Code, problem.Message);
        }
        if (command.Client is { } pollId && !ClientInfoRules.IsValidClientId(pollId))
        {
            return ChannelCommands.Error(command, ErrorCodes.BadRequest, $"'client' must be 1 to {ClientInfoRules.MaxClientIdLength} characters of A-Z a-z 0-9 _ -");
        }
        if (!auth.Succeeded)
        {
            Node.Metrics.CommandHandled(failed: true);
            Enqueue(ChannelCommands.Error(command, ErrorCodes.Unauthorized, auth.Error ?? "unauthorized"));
            _transport.Close(CloseCodes.Unauthorized, "unauthorized");
            return null;
        }
        var client = new ClientInfo(auth.User, ClientId) { Info = ClientInfoRules.Effective(auth.Info, command.Info) };
        _auth = auth;
        _pollClientId = command.Client;
        Volatile.Write(ref _client, client);
        ScheduleExpiry(auth.ExpiresAt);
        return ProtocolWriter.EncodeResult(command.Id, (client, Node.Options.KeepAliveInterval), static (w, s) =>
        {
            w.WriteString(ProtocolNames.Client, s.client.Client);
            w.WriteString(ProtocolNames.User, s.client.User);
            w.WriteString(ProtocolNames.Version, ServerVersion);
            w.WriteNumber(ProtocolNames.Ping, (int)s.KeepAliveInterval.TotalSeconds);
        });
    }

    private async ValueTask<byte[]?> RefreshAsync(Command command, CancellationToken cancellationToken)
    {
        if (command.Token is null)
        {
            return ChannelCommands.Error(command, ErrorCodes.BadRequest, "the field 'token' is required");
        }
        var auth = await Node.Authenticator.AuthenticateAsync(command.Token, cancellationToken);
        if (!auth.Succeeded)
        {
            return ChannelCommands.Error(command, ErrorCodes.Unauthorized, auth.Error ?? "unauthorized");
        }
        if (auth.User != _client!.User)
        {
            return ChannelCommands.Error(command, ErrorCodes.Unauthorized, "a refreshed token must be for the same user");
        }
        _auth = auth;
        ScheduleExpiry(auth.ExpiresAt);
        return ProtocolWriter.EncodeResult(command.Id, auth.ExpiresAt, static (w, e) =>
        {
            if (e is { } expires)
            {
                w.WriteNumber("expires", expires.ToUnixTimeSeconds());
            }
        });
    }

    private async ValueTask<byte[]?> SubscribeAsync(Command command, ClientInfo client, AuthenticationResult auth, CancellationToken cancellationToken)
    {
        if (ChannelCommands.ValidateChannel(Node, command, out var ns) is { } invalid)
        {
            return invalid;
        }
        if (!ChannelCommands.MaySubscribe(auth, ns, command.Channel!))
        {
            return ChannelCommands.Error(command, ErrorCodes.PermissionDenied, $"subscribing to {command.Channel} needs a grant");
        }
        var channel = command.Channel!;
        var subscription = new Subscription(this, channel, ns);
        lock (_gate)
        {
            if (_terminated)
            {
                return null;
            }
            if (_subscriptions.ContainsKey(channel))
            {
                return ChannelCommands.Error(command, ErrorCodes.AlreadySubscribed, $"already subscribed to {channel}");
            }
            if (_subscriptions.Count >= Node.Options.MaxSubscriptionsPerConnection)
            {
                return ChannelCommands.Error(command, ErrorCodes.TooManySubscriptions, $"a connection may hold at most {Node.Options.MaxSubscriptionsPerConnection} subscriptions");
            }
            _subscriptions.Add(channel, subscription);
        }

        // Register for live publications first and read history second; the subscription buffers what arrives
        // meanwhile and Activate() drops what the history already covered.
        RecoveryResult recovery;
        try
        {
            await Node.AddSubscriptionAsync(subscription, cancellationToken);
            StreamPosition? since = command.Since is { } s ? new StreamPosition(s.Offset!.Value, s.Epoch!) : null;
            recovery = await Node.RecoverAsync(channel, ns, since, cancellationToken);
        }
        catch
        {
            await RemoveAsync(subscription);
            throw;
        }
        if (recovery.InvalidPosition)
        {
            await RemoveAsync(subscription);
            return ChannelCommands.Error(command, ErrorCodes.InvalidPosition, $"offset {command.Since!.Offset} is beyond the channel's head {recovery.Position.Offset}");
        }
        if (ns.Presence)
        {
            Node.AddPresence(channel, client);
            if (_pollClientId is { } pollId)
            {
                // The same client, come over from polling: it is listed under this connection's id now.
                Node.EndPollPresence(channel, pollId, client.User);
            }
        }
        var reply = ProtocolWriter.EncodeResult(command.Id, recovery, static (w, r) =>
        {
            w.WriteString(ProtocolNames.Epoch, r.Position.Epoch);
            w.WriteNumber(ProtocolNames.Offset, r.Position.Offset);
            if (r.Recovered is { } recovered)
            {
                w.WriteBoolean(ProtocolNames.Recovered, recovered);
            }
            ProtocolWriter.WritePublications(w, r.Publications);
        });
        Node.Metrics.CommandHandled(failed: false);
        subscription.Activate(reply, recovery.Position);
        return null;
    }

    private async ValueTask<byte[]?> UnsubscribeAsync(Command command)
    {
        if (ChannelCommands.ValidateChannel(Node, command, out _) is { } invalid)
        {
            return invalid;
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
            return ChannelCommands.Error(command, ErrorCodes.NotSubscribed, $"not subscribed to {command.Channel}");
        }
        await DropSubscriptionAsync(subscription);
        return ProtocolWriter.EncodeResult(command.Id, 0, static (_, _) => { });
    }

    private async ValueTask RemoveAsync(Subscription subscription)
    {
        lock (_gate)
        {
            _subscriptions.Remove(subscription.Channel);
        }
        subscription.Close();
        await Node.RemoveSubscriptionAsync(subscription);
    }
}
