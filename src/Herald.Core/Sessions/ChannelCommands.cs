using System.Text.Json;
using Herald.Channels;
using Herald.Handlers;
using Herald.Protocol;

namespace Herald.Sessions;

/// <summary>A command's reply as it goes on the wire, and the refusal it carries, if any (for metrics and HTTP statuses).</summary>
/// <param name="Reply">The encoded reply, or <see langword="null"/> when the handler queued it itself.</param>
/// <param name="Error">The refusal, or <see langword="null"/> when the command succeeded.</param>
internal readonly record struct CommandOutcome(byte[]? Reply, HeraldError? Error)
{
    public static CommandOutcome Failed(long? id, HeraldError error) => new(ProtocolWriter.EncodeError(id, error.Code, error.Message), error);

    public static CommandOutcome Failed(long? id, string code, string message) => Failed(id, new HeraldError(code, message));

    public static CommandOutcome Succeeded(byte[]? reply) => new(reply, null);
}

/// <summary>
/// The commands that need no connection state (publish, history, presence, ping, rpc), for the WebSocket session and for
/// <c>POST /cmd</c> alike: each asks the <see cref="ChannelService"/> (and the application's handlers) and maps the typed
/// answer to a reply, once.
/// </summary>
internal static class ChannelCommands
{
    /// <summary>
    /// Runs a stateless command (publish, history, presence, ping, rpc) for a client of <paramref name="transport"/>
    /// (one of <see cref="HeraldTransportNames"/>); any other op is <c>unknown_op</c>.
    /// </summary>
    public static ValueTask<CommandOutcome> DispatchAsync(ChannelService channels, HandlerPipeline handlers, string transport, AuthenticationResult auth, ClientInfo client, Command command, CancellationToken cancellationToken) =>
        command.Op switch
        {
            Ops.Publish => PublishAsync(channels, handlers, transport, auth, client, command, cancellationToken),
            Ops.Rpc => RpcAsync(handlers, transport, auth, client, command, cancellationToken),
            Ops.History => HistoryAsync(channels, auth, command, cancellationToken),
            Ops.Presence => PresenceAsync(channels, auth, command, cancellationToken),
            Ops.Ping => ValueTask.FromResult(CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, 0, static (_, _) => { }))),
            _ => ValueTask.FromResult(CommandOutcome.Failed(command.Id, ErrorCodes.UnknownOp, $"unknown op '{command.Op}'")),
        };

    private static async ValueTask<CommandOutcome> PublishAsync(ChannelService channels, HandlerPipeline handlers, string transport, AuthenticationResult auth, ClientInfo client, Command command, CancellationToken cancellationToken)
    {
        if (!ChannelService.ReadBytes(command.Data, command.B64, channels.Options.MaxMessageBytes).TryGetValue(out var bytes, out var badBytes))
        {
            return CommandOutcome.Failed(command.Id, badBytes);
        }
        var data = command.Data;
        if (handlers.HandlesPublish)
        {
            // Herald's own rules first, so the application only sees publications it could allow.
            var checkedFirst = bytes is null
                ? channels.CheckPublish(auth, command.Channel, data, command.IdempotencyKey)
                : channels.CheckPublishTarget(auth, command.Channel, command.IdempotencyKey);
            if (checkedFirst.Error is { } refused)
            {
                return CommandOutcome.Failed(command.Id, refused);
            }
            // Typed as nullable on purpose: a null array converts to an empty memory, which would make a JSON publication
            // look binary to the handlers.
            ReadOnlyMemory<byte>? published = bytes is null ? null : (ReadOnlyMemory<byte>?)bytes;
            var context = new PublishContext(client, transport, command.Channel!, data ?? default, auth) { Bytes = published };
            var decided = await handlers.PublishAsync(context, cancellationToken);
            if (!decided.TryGetValue(out var payload, out var denied))
            {
                return CommandOutcome.Failed(command.Id, denied);
            }
            // A handler that put JSON in the place of bytes makes it a JSON publication.
            if (payload.ValueKind != JsonValueKind.Undefined)
            {
                data = payload;
                bytes = null;
            }
        }
        var result = bytes is null
            ? await channels.PublishAsync(auth, command.Channel, data, client, command.IdempotencyKey, cancellationToken)
            : await channels.PublishBytesAsync(auth, command.Channel, bytes, client, command.IdempotencyKey, cancellationToken);
        return result.TryGetValue(out var position, out var error)
            ? CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, position, static (w, p) => WritePosition(w, p)))
            : CommandOutcome.Failed(command.Id, error);
    }

    private static async ValueTask<CommandOutcome> RpcAsync(HandlerPipeline handlers, string transport, AuthenticationResult auth, ClientInfo client, Command command, CancellationToken cancellationToken)
    {
        if (HandlerPipeline.CheckMethod(command.Method) is { } invalid)
        {
            return CommandOutcome.Failed(command.Id, invalid);
        }
        if (handlers.IsEmpty)
        {
            return CommandOutcome.Failed(command.Id, ErrorCodes.NotAvailable, $"no handler answers the method '{command.Method}'");
        }
        var data = command.Data is { ValueKind: not JsonValueKind.Undefined } sent ? sent : (JsonElement?)null;
        var answer = await handlers.RpcAsync(new RpcContext(client, transport, command.Method!, data, auth), cancellationToken);
        return answer.TryGetValue(out var reply, out var error)
            ? CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, reply.Data, static (w, d) =>
            {
                // Re-encoded, never copied raw, so that the application's whitespace cannot put a newline in a frame.
                w.WritePropertyName(ProtocolNames.Data);
                if (d is { ValueKind: not JsonValueKind.Undefined } value)
                {
                    value.WriteTo(w);
                }
                else
                {
                    w.WriteNullValue();
                }
            }))
            : CommandOutcome.Failed(command.Id, error);
    }

    private static async ValueTask<CommandOutcome> HistoryAsync(ChannelService channels, AuthenticationResult auth, Command command, CancellationToken cancellationToken)
    {
        var result = await channels.HistoryAsync(auth, command.Channel, command.Since?.Offset, command.Since?.Epoch, command.Limit, command.Reverse ?? false, cancellationToken);
        return result.TryGetValue(out var history, out var error)
            ? CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, history, static (w, h) => WriteHistoryPage(w, h)))
            : CommandOutcome.Failed(command.Id, error);
    }

    /// <summary>Writes <c>"epoch":…,"offset":…,"publications":[…]</c> and, when there is more, <c>"next":{"offset":…,"epoch":…}</c>.</summary>
    public static void WriteHistoryPage(Utf8JsonWriter writer, HistoryPage page)
    {
        WritePosition(writer, page.Head);
        ProtocolWriter.WritePublications(writer, page.Publications);
        if (page.Next is { } next)
        {
            writer.WriteStartObject(ProtocolNames.Next);
            writer.WriteNumber(ProtocolNames.Offset, next.Offset);
            writer.WriteString(ProtocolNames.Epoch, next.Epoch);
            writer.WriteEndObject();
        }
    }

    private static async ValueTask<CommandOutcome> PresenceAsync(ChannelService channels, AuthenticationResult auth, Command command, CancellationToken cancellationToken)
    {
        var result = await channels.PresenceAsync(auth, command.Channel, cancellationToken);
        return result.TryGetValue(out var members, out var error)
            ? CommandOutcome.Succeeded(ProtocolWriter.EncodeResult(command.Id, members, static (w, m) => WritePresence(w, m)))
            : CommandOutcome.Failed(command.Id, error);
    }

    /// <summary>Writes <c>"epoch":…,"offset":…</c>.</summary>
    public static void WritePosition(Utf8JsonWriter writer, StreamPosition position)
    {
        writer.WriteString(ProtocolNames.Epoch, position.Epoch);
        writer.WriteNumber(ProtocolNames.Offset, position.Offset);
    }

    /// <summary>Writes <c>"presence":{"&lt;client&gt;":{"user":…,"client":…,"info":{…}},…}</c>; <c>info</c> only when the client has one.</summary>
    public static void WritePresence(Utf8JsonWriter writer, IReadOnlyCollection<ClientInfo> members)
    {
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
}
