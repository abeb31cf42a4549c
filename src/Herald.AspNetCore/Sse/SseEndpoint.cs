using System.Text.Json;
using Herald.AspNetCore.Polling;
using Herald.Brokers;
using Herald.Channels;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.Sse;

/// <summary>
/// <c>GET /sse</c>: the query of <c>GET /poll</c> (with <c>channel</c> repeatable), resumable with <c>Last-Event-ID</c>.
/// Everything that can be refused is refused before the response starts, with the JSON error and status of <c>/poll</c>;
/// after that the stream reports its end as a last <c>{"close":…}</c> event.
/// </summary>
internal static class SseEndpoint
{
    public static async Task HandleAsync(HttpContext context, HeraldNode node, KeepAliveWheel? keepAlive, ILogger logger)
    {
        var options = node.Options;
        var query = context.Request.Query;
        var channels = query["channel"];
        if (channels.Count == 0)
        {
            await BadRequestAsync(context, "name at least one 'channel'");
            return;
        }
        if (channels.Count > options.MaxSubscriptionsPerConnection)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.TooManySubscriptions,
                $"a stream may hold at most {options.MaxSubscriptionsPerConnection} subscriptions (Herald:MaxSubscriptionsPerConnection)");
            return;
        }
        var offsets = query["offset"];
        var epochs = query["epoch"];
        if (offsets.Count is not 0 && offsets.Count != channels.Count || epochs.Count is not 0 && epochs.Count != channels.Count)
        {
            await BadRequestAsync(context, "give 'offset' and 'epoch' once per 'channel', in the same order (empty for a channel without a cursor), or not at all");
            return;
        }
        var entries = new (string? Channel, string? Offset, string? Epoch)[channels.Count];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < entries.Length; i++)
        {
            entries[i] = (channels[i], offsets.Count == 0 || offsets[i] is not { Length: > 0 } o ? null : o, epochs.Count == 0 || epochs[i] is not { Length: > 0 } e ? null : e);
            if (!seen.Add(channels[i] ?? ""))
            {
                await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.AlreadySubscribed, $"{channels[i]} is named twice");
                return;
            }
        }
        var cursors = new List<PollCursor>(entries.Length);
        foreach (var entry in entries)
        {
            // One at a time, so that a refusal names its channel first ("x:y: unknown namespace 'x'"), as clients expect.
            var (resolved, invalid) = PollRequest.ResolveCursors([entry], options);
            if (resolved is null)
            {
                await HttpErrors.WriteAsync(context, invalid!.Message.StartsWith(entry.Channel + ":", StringComparison.Ordinal) ? invalid : invalid with { Message = $"{entry.Channel}: {invalid.Message}" });
                return;
            }
            cursors.Add(resolved[0]);
        }
        var start = cursors.Select(c => c.Since).ToArray();
        // EventSource sends back the id of the last event it received; it moves every cursor past the query's.
        if (context.Request.Headers["Last-Event-ID"] is { Count: > 0 } lastEventId && lastEventId.ToString() is { Length: > 0 } idText)
        {
            if (idText.Length > SseEventId.MaxLength(cursors.Count))
            {
                await BadRequestAsync(context, $"Last-Event-ID is longer than {SseEventId.MaxLength(cursors.Count)} characters");
                return;
            }
            if (!SseEventId.TryParse(idText, cursors.Count, out var resumed, out var error))
            {
                await BadRequestAsync(context, error!);
                return;
            }
            start = resumed;
        }
        var client = PollRequest.Nullable(query["client"]);
        if ((PollRequest.ParseQueryInfo(query, options, out var info) ?? PollRequest.CheckClient(client, info, options)) is { } refusal)
        {
            await HttpErrors.WriteAsync(context, refusal.Item2, refusal.Item3!, refusal.Item4!);
            return;
        }

        var connection = new SseConnection(node, context, cursors.Select(c => c.Channel).ToArray(), start, keepAlive, logger);
        var session = connection.Session;
        if (await HttpAuth.AuthenticateAsync(context, node, Herald.Handlers.HeraldTransportNames.Sse, session.ClientId, PollRequest.Nullable(query["token"])) is not { } auth)
        {
            await session.TerminateAsync();
            return;
        }
        foreach (var cursor in cursors)
        {
            if (ChannelService.AuthorizeRead(auth, cursor.Channel, cursor.Namespace, "subscribing to") is { } denied)
            {
                await session.TerminateAsync();
                await HttpErrors.WriteAsync(context, denied with { Message = $"{cursor.Channel}: {denied.Message}" });
                return;
            }
        }
        // The token's info wins over the client's, as on every transport.
        session.ConnectStream(auth, auth.Info is null ? info : null, client);
        for (var i = 0; i < cursors.Count; i++)
        {
            HeraldError? refused;
            try
            {
                refused = await session.SubscribeStreamAsync(cursors[i].Channel, start[i], context.RequestAborted);
            }
            catch (BrokerUnavailableException)
            {
                refused = new HeraldError(ErrorCodes.Unavailable, "the broker cannot be reached");
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                await session.TerminateAsync();
                return;
            }
            if (refused is not null)
            {
                await session.TerminateAsync();
                await HttpErrors.WriteAsync(context, refused with { Message = $"{cursors[i].Channel}: {refused.Message}" });
                return;
            }
        }
        await connection.RunAsync();
    }

    private static Task BadRequestAsync(HttpContext context, string message) =>
        HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, message);
}
