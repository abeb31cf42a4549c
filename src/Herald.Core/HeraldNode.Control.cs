using System.Text.Json;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Logging;

namespace Herald;

/// <summary>
/// Commands about a user's live connections, wherever they are: this node's connections by user, and the control
/// messages nodes send each other through the broker (<see cref="IBroker.SendControlAsync"/>) to disconnect a user or
/// subscribe or unsubscribe a user's connections.
/// </summary>
public sealed partial class HeraldNode
{
    private const string ControlDisconnect = "disconnect";
    private const string ControlSubscribe = "subscribe";
    private const string ControlUnsubscribe = "unsubscribe";

    // Connected WebSocket sessions by user (anonymous ones are not listed: nobody can address them). Changed on connect
    // and disconnect only, read by control messages: one lock is enough.
    private readonly Dictionary<string, List<ClientSession>> _users = new(StringComparer.Ordinal);
    private readonly Lock _usersGate = new();

    /// <summary>How many connections of <paramref name="user"/> this node holds (for tests).</summary>
    internal int ConnectionsOf(string user)
    {
        lock (_usersGate)
        {
            return _users.TryGetValue(user, out var list) ? list.Count : 0;
        }
    }

    internal void AddUserSession(string user, ClientSession session)
    {
        lock (_usersGate)
        {
            if (!_users.TryGetValue(user, out var list))
            {
                _users[user] = list = [];
            }
            list.Add(session);
        }
    }

    internal void RemoveUserSession(string user, ClientSession session)
    {
        lock (_usersGate)
        {
            if (_users.TryGetValue(user, out var list) && list.Remove(session) && list.Count == 0)
            {
                _users.Remove(user);
            }
        }
    }

    private ClientSession[] SessionsOf(string user)
    {
        lock (_usersGate)
        {
            return _users.TryGetValue(user, out var list) ? [.. list] : [];
        }
    }

    /// <summary>Sends a control message to every node, this one included; <c>unavailable</c> when the broker cannot take it.</summary>
    internal async ValueTask<HeraldError?> SendControlAsync(byte[] message, CancellationToken cancellationToken)
    {
        try
        {
            await Broker.SendControlAsync(message, cancellationToken);
            return null;
        }
        catch (BrokerUnavailableException)
        {
            return new HeraldError(ErrorCodes.Unavailable, "the broker cannot be reached");
        }
    }

    internal static byte[] EncodeDisconnect(string user, int code, string reason) => ProtocolWriter.Write((user, code, reason), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteString("op", ControlDisconnect);
        w.WriteString("user", s.user);
        w.WriteNumber("code", s.code);
        w.WriteString("reason", s.reason);
        w.WriteEndObject();
    });

    internal static byte[] EncodeSubscribe(string user, string channel, StreamPosition? since) => ProtocolWriter.Write((user, channel, since), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteString("op", ControlSubscribe);
        w.WriteString("user", s.user);
        w.WriteString("channel", s.channel);
        if (s.since is { } since)
        {
            w.WriteStartObject("since");
            w.WriteNumber("offset", since.Offset);
            w.WriteString("epoch", since.Epoch);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    });

    internal static byte[] EncodeUnsubscribe(string user, string channel, string reason) => ProtocolWriter.Write((user, channel, reason), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteString("op", ControlUnsubscribe);
        w.WriteString("user", s.user);
        w.WriteString("channel", s.channel);
        w.WriteString("reason", s.reason);
        w.WriteEndObject();
    });

    /// <summary>A control message from the broker: acts on this node's connections of the user it names. Never blocks.</summary>
    private void HandleControl(ReadOnlyMemory<byte> message)
    {
        string? op, user, channel = null, reason = null;
        int code = 0;
        StreamPosition? since = null;
        try
        {
            using var document = JsonDocument.Parse(message);
            var root = document.RootElement;
            op = root.GetProperty("op").GetString();
            user = root.GetProperty("user").GetString();
            if (root.TryGetProperty("channel", out var c))
            {
                channel = c.GetString();
            }
            if (root.TryGetProperty("reason", out var r))
            {
                reason = r.GetString();
            }
            if (root.TryGetProperty("code", out var n))
            {
                code = n.GetInt32();
            }
            if (root.TryGetProperty("since", out var p))
            {
                since = new StreamPosition(p.GetProperty("offset").GetUInt64(), p.GetProperty("epoch").GetString()!);
            }
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            Log.ControlMalformed(_logger, ex);
            return;
        }
        if (user is null)
        {
            return;
        }
        var sessions = SessionsOf(user);
        if (sessions.Length == 0)
        {
            return;
        }
        switch (op)
        {
            case ControlDisconnect:
                foreach (var session in sessions)
                {
                    session.Disconnect(code, reason ?? "");
                }
                break;
            // Off the broker's thread: subscribing reads history and presence, which the broker's delivery must not wait for.
            case ControlSubscribe when channel is not null:
                _ = Task.Run(() => SubscribeSessionsAsync(sessions, channel, since));
                break;
            case ControlUnsubscribe when channel is not null:
                _ = Task.Run(() => UnsubscribeSessionsAsync(sessions, channel, reason ?? ""));
                break;
            default:
                Log.ControlUnknown(_logger, op);
                break;
        }
    }

    private async Task SubscribeSessionsAsync(ClientSession[] sessions, string channel, StreamPosition? since)
    {
        // The sender checked the name; a node configured with other namespaces may still not know it.
        if (!Channels.Resolve(channel).TryGetValue(out var ns, out var invalid))
        {
            Log.ServerSubscribeFailed(_logger, channel, "*", invalid.Code, invalid.Message);
            return;
        }
        foreach (var session in sessions)
        {
            try
            {
                if (await session.ServerSubscribeAsync(channel, ns, since, Stopping) is { } error)
                {
                    Log.ServerSubscribeFailed(_logger, channel, session.ClientId, error.Code, error.Message);
                }
            }
            catch (Exception ex) when (!Stopping.IsCancellationRequested)
            {
                Log.ServerSubscribeCrashed(_logger, channel, session.ClientId, ex);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task UnsubscribeSessionsAsync(ClientSession[] sessions, string channel, string reason)
    {
        foreach (var session in sessions)
        {
            try
            {
                await session.ServerUnsubscribeAsync(channel, reason);
            }
            catch (Exception ex)
            {
                Log.ServerSubscribeCrashed(_logger, channel, session.ClientId, ex);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 103, Level = LogLevel.Error, Message = "A control message from the broker is malformed; dropped")]
        public static partial void ControlMalformed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "A control message has the unknown op {Op}; dropped")]
        public static partial void ControlUnknown(ILogger logger, string? op);

        [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "Server-side subscribe of client {ClientId} to {Channel} refused: {Code}: {Message}")]
        public static partial void ServerSubscribeFailed(ILogger logger, string channel, string clientId, string code, string message);

        [LoggerMessage(EventId = 106, Level = LogLevel.Error, Message = "Server-side subscribe or unsubscribe of client {ClientId} to {Channel} failed")]
        public static partial void ServerSubscribeCrashed(ILogger logger, string channel, string clientId, Exception exception);
    }
}
