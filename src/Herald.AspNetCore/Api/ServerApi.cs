using System.Globalization;
using System.Text.Json;
using Herald.AspNetCore.Security;
using Herald.Channels;
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
        var key = ApiKey.For(node.Options.ApiKey);

        // Static handlers and one closure per route, made here: a request allocates no delegate of its own.
        endpoints.MapPost("/api/publish", context => Authorized(context, key, node, static (c, n) => PublishAsync(c, n)));
        endpoints.MapGet("/api/channels/{channel}/history", context => Authorized(context, key, node, static (c, n) => HistoryAsync(c, n)));
        endpoints.MapGet("/api/channels/{channel}/presence", context => Authorized(context, key, node, static (c, n) => PresenceAsync(c, n)));
        endpoints.MapGet("/api/stats", context => Authorized(context, key, node, static (c, n) => StatsAsync(c, n)));
        endpoints.MapPost("/api/disconnect", context => Authorized(context, key, node, static (c, n) => DisconnectAsync(c, n.Server)));
        endpoints.MapPost("/api/subscribe", context => Authorized(context, key, node, static (c, n) => SubscribeAsync(c, n.Server)));
        endpoints.MapPost("/api/unsubscribe", context => Authorized(context, key, node, static (c, n) => UnsubscribeAsync(c, n.Server)));
    }

    private static Task Authorized(HttpContext context, ApiKey? key, HeraldNode node, Func<HttpContext, HeraldNode, Task> next)
    {
        if (key is null)
        {
            return HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "the server API is disabled: Herald:ApiKey is not set");
        }
        switch (key.Check(context.Request.Headers.Authorization.ToString()))
        {
            case ApiKey.Verdict.Accepted:
                return next(context, node);
            case ApiKey.Verdict.NotBearer:
                context.Response.Headers.WWWAuthenticate = "Bearer";
                return HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "send the API key as 'Authorization: Bearer <key>'");
            default:
                context.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
                return HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "wrong API key");
        }
    }

    private static async Task PublishAsync(HttpContext context, HeraldNode node)
    {
        var max = node.Options.MaxMessageBytes;
        var binary = IsOctetStream(context.Request.ContentType);
        // A raw body is the payload itself; a JSON body has room for the envelope and base64's third more.
        var bodyLimit = binary ? max : max / 3 * 4 + 4 + 1024;
        if (context.Request.ContentLength > bodyLimit)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, binary ? $"data is larger than {max} bytes" : $"the body is larger than {bodyLimit} bytes");
            return;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = bodyLimit;
        }
        if (binary)
        {
            await PublishBodyAsync(context, node, max);
            return;
        }
        PublishRequestBody? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(context.Request.Body, ProtocolJsonContext.Default.PublishRequestBody, context.RequestAborted);
        }
        catch (JsonException ex)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"invalid JSON body ({ex.Path ?? "$"}); expected {{\"channel\":\"…\",\"data\":…}} or {{\"channel\":\"…\",\"b64\":\"…\"}}");
            return;
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {bodyLimit} bytes");
            return;
        }
        if (request is null)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "expected {\"channel\":\"…\",\"data\":…} or {\"channel\":\"…\",\"b64\":\"…\"}");
            return;
        }
        if (!ChannelService.ReadBytes(request.Data, request.B64, max).TryGetValue(out var bytes, out var badBytes))
        {
            await HttpErrors.WriteAsync(context, badBytes);
            return;
        }
        var published = bytes is null
            ? await node.Server.PublishAsync(request.Channel!, request.Data ?? default, new PublishOptions { IdempotencyKey = request.IdempotencyKey }, context.RequestAborted)
            : await node.Server.PublishBytesAsync(request.Channel!, bytes, new PublishOptions { IdempotencyKey = request.IdempotencyKey }, context.RequestAborted);
        await WritePublishedAsync(context, published);
    }

    /// <summary><c>Content-Type: application/octet-stream</c>: the body is the payload; the channel and key are in the query.</summary>
    private static async Task PublishBodyAsync(HttpContext context, HeraldNode node, int max)
    {
        var query = context.Request.Query;
        if (!query.TryGetValue("channel", out var channel) || channel.Count != 1)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "an application/octet-stream body needs the channel in the query: /api/publish?channel=<name>");
            return;
        }
        string? key = query.TryGetValue("idempotency_key", out var keys) ? keys.ToString() : null;
        byte[] payload;
        try
        {
            payload = await ReadBodyAsync(context.Request.Body, max, context.RequestAborted);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"data is larger than {max} bytes");
            return;
        }
        var published = await node.Server.PublishBytesAsync(channel.ToString(), payload, new PublishOptions { IdempotencyKey = key }, context.RequestAborted);
        await WritePublishedAsync(context, published);
    }

    private static async Task<byte[]> ReadBodyAsync(Stream body, int max, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        // The server's body-size limit (set to max above) stops a longer body with 413; the copy never holds more.
        await body.CopyToAsync(buffer, cancellationToken);
        return buffer.Length <= max ? buffer.ToArray() : throw new BadHttpRequestException("body too large", StatusCodes.Status413PayloadTooLarge);
    }

    private static bool IsOctetStream(string? contentType) =>
        contentType is not null
        && contentType.AsSpan().Trim().StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase);

    private static async Task WritePublishedAsync(HttpContext context, HeraldResult<StreamPosition> published)
    {
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
        var read = await node.Server.ReadHistoryAsync(channel!, new HistoryQuery { Offset = after, Epoch = epoch, Limit = limit, Reverse = reverse }, context.RequestAborted);
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
        var presence = await node.Server.GetPresenceAsync((string)context.Request.RouteValues["channel"]!, context.RequestAborted);
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

    private static async Task DisconnectAsync(HttpContext context, IHeraldServer server)
    {
        if (await ReadBodyAsync(context, ProtocolJsonContext.Default.DisconnectRequestBody, """{"user":"…","code":4100,"reason":"…"}""") is not { } request)
        {
            return;
        }
        await AnswerAsync(context, await server.DisconnectAsync(request.User!, request.Code ?? CloseCodes.ServerDisconnect, request.Reason, context.RequestAborted));
    }

    private static async Task SubscribeAsync(HttpContext context, IHeraldServer server)
    {
        const string Expected = """{"user":"…","channel":"…","since":{"offset":…,"epoch":"…"}}""";
        if (await ReadBodyAsync(context, ProtocolJsonContext.Default.ServerSubscribeRequestBody, Expected) is not { } request)
        {
            return;
        }
        StreamPosition? since = null;
        if (request.Since is { } s)
        {
            if (s.Offset is not { } offset || s.Epoch is not { } epoch)
            {
                await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "'since' needs both 'offset' and 'epoch'");
                return;
            }
            since = new StreamPosition(offset, epoch);
        }
        await AnswerAsync(context, await server.SubscribeAsync(request.User!, request.Channel!, since, context.RequestAborted));
    }

    private static async Task UnsubscribeAsync(HttpContext context, IHeraldServer server)
    {
        if (await ReadBodyAsync(context, ProtocolJsonContext.Default.ServerUnsubscribeRequestBody, """{"user":"…","channel":"…"}""") is not { } request)
        {
            return;
        }
        await AnswerAsync(context, await server.UnsubscribeAsync(request.User!, request.Channel!, context.RequestAborted));
    }

    /// <summary>Reads a small JSON body (at most 4 KiB); answers 400 or 413 itself and returns <see langword="null"/> when it cannot.</summary>
    private static async Task<T?> ReadBodyAsync<T>(HttpContext context, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string expected)
        where T : class
    {
        const int Max = 4096;
        if (context.Request.ContentLength > Max)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {Max} bytes");
            return null;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = Max;
        }
        try
        {
            if (await JsonSerializer.DeserializeAsync(context.Request.Body, type, context.RequestAborted) is { } body)
            {
                return body;
            }
        }
        catch (JsonException ex)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"invalid JSON body ({ex.Path ?? "$"}); expected {expected}");
            return null;
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {Max} bytes");
            return null;
        }
        await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"expected {expected}");
        return null;
    }

    /// <summary>The answer of a user command: <c>200 {}</c>, or the error's status and body.</summary>
    private static Task AnswerAsync(HttpContext context, HeraldError? error) =>
        error is null ? HttpErrors.WriteJsonAsync(context, "{}"u8.ToArray()) : HttpErrors.WriteAsync(context, error);

    private static Task StatsAsync(HttpContext context, HeraldNode node)
    {
        var metrics = node.Metrics;
        return HttpErrors.WriteJsonAsync(context, ProtocolWriter.Write((node, metrics), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteString("node", s.node.NodeId);
            w.WriteStartObject("connections");
            w.WriteNumber("websocket", s.metrics.WebSocketConnections);
            w.WriteNumber("sse", s.metrics.SseConnections);
            w.WriteEndObject();
            w.WriteNumber("channels", s.node.ActiveChannels);
            w.WriteNumber("publications", s.metrics.Publications);
            w.WriteNumber("deliveries", s.metrics.Deliveries);
            w.WriteNumber("dispatchBacklog", s.metrics.DispatchBacklog);
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
