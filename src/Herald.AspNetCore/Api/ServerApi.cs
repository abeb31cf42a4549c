using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;

namespace Herald.AspNetCore.Api;

/// <summary>The server API under <c>/api</c>, for the application's backend; every call needs the API key.</summary>
internal static class ServerApi
{
    public static void Map(IEndpointRouteBuilder endpoints, HeraldNode node)
    {
        var keyHash = node.Options.ApiKey is { Length: > 0 } key ? SHA256.HashData(Encoding.UTF8.GetBytes(key)) : null;

        endpoints.MapPost("/api/publish", context => Authorized(context, keyHash, () => PublishAsync(context, node)));
        endpoints.MapGet("/api/channels/{channel}/history", context => Authorized(context, keyHash, () => HistoryAsync(context, node)));
        endpoints.MapGet("/api/channels/{channel}/presence", context => Authorized(context, keyHash, () => PresenceAsync(context, node)));
        endpoints.MapGet("/api/stats", context => Authorized(context, keyHash, () => StatsAsync(context, node)));
    }

    private static Task Authorized(HttpContext context, byte[]? keyHash, Func<Task> next)
    {
        if (keyHash is null)
        {
            return HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "the server API is disabled: Herald:ApiKey is not set");
        }
        var header = context.Request.Headers.Authorization.ToString();
        const string Prefix = "Bearer ";
        if (!header.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            return HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "send the API key as 'Authorization: Bearer <key>'");
        }
        // Hash both sides so that the comparison takes the same time whatever the key's length or content.
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(header[Prefix.Length..].Trim()));
        if (!CryptographicOperations.FixedTimeEquals(given, keyHash))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
            return HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "wrong API key");
        }
        return next();
    }

    private static async Task PublishAsync(HttpContext context, HeraldNode node)
    {
        var max = node.Options.MaxMessageBytes;
        if (context.Request.ContentLength > max + 1024)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {max + 1024} bytes");
            return;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = max + 1024;
        }
        PublishRequestBody? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(context.Request.Body, ProtocolJsonContext.Default.PublishRequestBody, context.RequestAborted);
        }
        catch (JsonException ex)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"invalid JSON body ({ex.Path ?? "$"}); expected {{\"channel\":\"…\",\"data\":…}}");
            return;
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {max + 1024} bytes");
            return;
        }
        if (request is null)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "expected {\"channel\":\"…\",\"data\":…}");
            return;
        }
        var published = await node.Channels.PublishAsync(auth: null, request.Channel, request.Data, info: null, request.IdempotencyKey, context.RequestAborted);
        if (!published.TryGetValue(out var position, out var error))
        {
            await HttpErrors.WriteAsync(context, error);
            return;
        }
        await HttpErrors.WriteJsonAsync(context, ProtocolWriter.Write(position, static (w, p) =>
        {
            w.WriteStartObject();
            ChannelCommands.WritePosition(w, p);
            w.WriteEndObject();
        }));
    }

    private static async Task HistoryAsync(HttpContext context, HeraldNode node)
    {
        var channel = (string?)context.Request.RouteValues["channel"];
        var query = context.Request.Query;
        int? limit = null;
        if (query.TryGetValue("limit", out var limitText))
        {
            if (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
            {
                await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"'limit' must be an integer between 1 and {node.Options.MaxHistoryLimit}");
                return;
            }
            limit = parsed;
        }
        ulong? after = null;
        if (query.TryGetValue("offset", out var offsetText))
        {
            if (!ulong.TryParse(offsetText, NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
            {
                await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "'offset' must be a non-negative integer");
                return;
            }
            after = offset;
        }
        var reverse = false;
        if (query.TryGetValue("reverse", out var reverseText) && !bool.TryParse(reverseText, out reverse))
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "'reverse' must be true or false");
            return;
        }
        string? epoch = query.TryGetValue("epoch", out var epochText) ? epochText.ToString() : null;
        var read = await node.Channels.HistoryAsync(auth: null, channel, after, epoch, limit, reverse, context.RequestAborted);
        if (!read.TryGetValue(out var history, out var error))
        {
            await HttpErrors.WriteAsync(context, error);
            return;
        }
        await HttpErrors.WriteJsonAsync(context, ProtocolWriter.Write(history, static (w, h) =>
        {
            w.WriteStartObject();
            ChannelCommands.WriteHistoryPage(w, h);
            w.WriteEndObject();
        }));
    }

    private static async Task PresenceAsync(HttpContext context, HeraldNode node)
    {
        var presence = await node.Channels.PresenceAsync(auth: null, (string?)context.Request.RouteValues["channel"], context.RequestAborted);
        if (!presence.TryGetValue(out var members, out var error))
        {
            await HttpErrors.WriteAsync(context, error);
            return;
        }
        await HttpErrors.WriteJsonAsync(context, ProtocolWriter.Write(members, static (w, m) =>
        {
            w.WriteStartObject();
            ChannelCommands.WritePresence(w, m);
            w.WriteEndObject();
        }));
    }

    private static Task StatsAsync(HttpContext context, HeraldNode node)
    {
        var metrics = node.Metrics;
        return HttpErrors.WriteJsonAsync(context, ProtocolWriter.Write((node, metrics), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteString("node", s.node.NodeId);
            w.WriteStartObject("connections");
            w.WriteNumber("websocket", s.metrics.WebSocketConnections);
            w.WriteEndObject();
            w.WriteNumber("channels", s.node.ActiveChannels);
            w.WriteNumber("publications", s.metrics.Publications);
            w.WriteNumber("deliveries", s.metrics.Deliveries);
            w.WriteNumber("slowConsumerCloses", s.metrics.SlowConsumerCloses);
            w.WriteNumber("commands", s.metrics.Commands);
            w.WriteNumber("commandErrors", s.metrics.CommandErrors);
            w.WriteStartObject("polls");
            w.WriteNumber("parked", s.node.ParkedPolls);
            w.WriteNumber("withData", s.metrics.PollsWithData);
            w.WriteNumber("empty", s.metrics.PollsEmpty);
            w.WriteNumber("notModified", s.metrics.PollsNotModified);
            w.WriteEndObject();
            w.WriteEndObject();
        }));
    }
}
