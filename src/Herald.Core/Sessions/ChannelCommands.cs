using System.Text.Json;
using Herald.Protocol;

namespace Herald.Sessions;

/// <summary>
/// The commands that need no connection state (publish, history, presence): shared by WebSocket sessions and
/// by the stateless HTTP command endpoint, so both answer with the same rules, limits and error codes.
/// </summary>
public static class ChannelCommands
{
    /// <summary>Handles a publish by a client; returns the reply.</summary>
    public static async ValueTask<byte[]> PublishAsync(HeraldNode node, AuthenticationResult auth, ClientInfo client, Command command, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(auth);
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(command);
        if (ValidateChannel(node, command, out var ns) is { } invalid)
        {
            return invalid;
        }
        if (!ns.AllowClientPublish && !auth.CanPublish(command.Channel!))
        {
            return Error(command, ErrorCodes.PermissionDenied, $"publish to {command.Channel} is not allowed");
        }
        if (command.Data is not { } data || data.ValueKind == JsonValueKind.Undefined)
        {
            return Error(command, ErrorCodes.BadRequest, "the field 'data' is required");
        }
        var payload = CompactJson(data);
        if (payload.Length > node.Options.MaxMessageBytes)
        {
            return Error(command, ErrorCodes.PayloadTooLarge, $"data is larger than {node.Options.MaxMessageBytes} bytes");
        }
        var position = await node.PublishAsync(command.Channel!, ns, payload, client, cancellationToken);
        return ProtocolWriter.EncodeResult(command.Id, position, static (w, p) =>
        {
            w.WriteString(ProtocolNames.Epoch, p.Epoch);
            w.WriteNumber(ProtocolNames.Offset, p.Offset);
        });
    }

    /// <summary>Handles a history read; returns the reply.</summary>
    public static async ValueTask<byte[]> HistoryAsync(HeraldNode node, AuthenticationResult auth, Command command, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(auth);
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(command);
        if (ValidateChannel(node, command, out var ns) is { } invalid)
        {
            return invalid;
        }
        if (!MaySubscribe(auth, ns, command.Channel!))
        {
            return Error(command, ErrorCodes.PermissionDenied, $"reading {command.Channel} needs a grant");
        }
        var max = node.Options.MaxHistoryLimit;
        var limit = command.Limit ?? max;
        if (limit < 1 || limit > max)
        {
            return Error(command, ErrorCodes.BadRequest, $"'limit' must be between 1 and {max}");
        }
        var history = await node.ReadHistoryAsync(command.Channel!, ns, command.Since?.Offset, limit, cancellationToken);
        if (command.Since is { } since)
        {
            if (since.Epoch != history.Position.Epoch)
            {
                return Error(command, ErrorCodes.EpochMismatch, $"the channel's epoch is {history.Position.Epoch}, not {since.Epoch}");
            }
            if (since.Offset > history.Position.Offset)
            {
                return Error(command, ErrorCodes.InvalidPosition, $"offset {since.Offset} is beyond the channel's head {history.Position.Offset}");
            }
        }
        return ProtocolWriter.EncodeResult(command.Id, history, static (w, h) =>
        {
            w.WriteString(ProtocolNames.Epoch, h.Position.Epoch);
            w.WriteNumber(ProtocolNames.Offset, h.Position.Offset);
            ProtocolWriter.WritePublications(w, h.Publications);
        });
    }

    /// <summary>Handles a presence query; returns the reply.</summary>
    public static byte[] Presence(HeraldNode node, AuthenticationResult auth, Command command)
    {
        ArgumentNullException.ThrowIfNull(auth);
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(command);
        if (ValidateChannel(node, command, out var ns) is { } invalid)
        {
            return invalid;
        }
        if (!ns.Presence)
        {
            return Error(command, ErrorCodes.NotAvailable, $"presence is not enabled for {command.Channel}");
        }
        if (!MaySubscribe(auth, ns, command.Channel!))
        {
            return Error(command, ErrorCodes.PermissionDenied, $"presence of {command.Channel} needs a grant");
        }
        var members = node.GetPresence(command.Channel!);
        return ProtocolWriter.EncodeResult(command.Id, members, static (w, m) => WritePresence(w, m));
    }

    /// <summary>Writes <c>"presence":{"&lt;client&gt;":{"user":…,"client":…,"info":{…}},…}</c>; <c>info</c> only when the client has one.</summary>
    public static void WritePresence(Utf8JsonWriter writer, IReadOnlyCollection<ClientInfo> members)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(members);
        writer.WriteStartObject(ProtocolNames.Presence);
        foreach (var member in members)
        {
            writer.WriteStartObject(member.Client);
            writer.WriteString(ProtocolNames.User, member.User);
            writer.WriteString(ProtocolNames.Client, member.Client);
            if (member.Info is { } info)
            {
                // Re-encoded, never copied raw, so that client-supplied whitespace cannot put a newline in a frame.
                writer.WritePropertyName(ProtocolNames.Info);
                info.WriteTo(writer);
            }
            writer.WriteEndObject();
        }
        writer.WriteEndObject();
    }

    /// <summary>Re-encodes JSON compactly, so that a payload never carries a newline into newline-delimited frames.</summary>
    public static byte[] CompactJson(JsonElement data) => ProtocolWriter.Write(data, static (w, d) => d.WriteTo(w));

    /// <summary>Whether the client may subscribe to (and read history and presence of) a channel.</summary>
    public static bool MaySubscribe(AuthenticationResult auth, NamespaceOptions ns, string channel)
    {
        ArgumentNullException.ThrowIfNull(auth);
        ArgumentNullException.ThrowIfNull(ns);
        return !ns.RequireGrant || auth.CanSubscribe(channel);
    }

    internal static byte[]? ValidateChannel(HeraldNode node, Command command, out NamespaceOptions ns)
    {
        var problem = ChannelName.Validate(command.Channel, node.Options, out var found);
        ns = found!;
        return problem is null ? null : Error(command, ErrorCodes.InvalidChannel, problem);
    }

    internal static byte[] Error(Command command, string code, string message) => ProtocolWriter.EncodeError(command.Id, code, message);
}
