using System.Globalization;
using System.Text.Json;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore.Polling;

/// <summary>One channel of a poll and the cursor the client holds for it.</summary>
internal sealed record PollCursor(string Channel, NamespaceOptions Namespace, StreamPosition? Since);

/// <summary>
/// A parsed poll: the channels with their cursors, how long the client will wait, and, for presence, the client's own
/// id and display info (both optional).
/// </summary>
internal sealed record PollRequest(IReadOnlyList<PollCursor> Cursors, TimeSpan Wait, string? Client, JsonElement? Info)
{
    /// <summary>The channels polled, in the order of <see cref="Cursors"/>.</summary>
    public IReadOnlyList<string> Channels { get; } = Cursors.Select(c => c.Channel).ToArray();

    /// <summary>
    /// Parses <c>GET /poll?channel=…&amp;offset=…&amp;epoch=…&amp;wait=…&amp;client=…&amp;info=…</c> or a <c>POST /poll</c> body.
    /// <c>info</c> is checked only when <paramref name="tokenInfo"/> is <see langword="null"/>: a token's info wins
    /// and the client's is ignored.
    /// </summary>
    /// <returns>The request, or an error code and message for a 4xx answer.</returns>
    public static async Task<(PollRequest? Request, int Status, string? Code, string? Message)> ParseAsync(HttpContext context, HeraldOptions options, JsonElement? tokenInfo)
    {
        var entries = new List<(string? Channel, string? Offset, string? Epoch)>();
        string? waitText;
        string? client;
        JsonElement? info = null;
        if (HttpMethods.IsGet(context.Request.Method))
        {
            var query = context.Request.Query;
            if (query["channel"].Count > 1)
            {
                return Fail(ErrorCodes.BadRequest, "GET /poll takes one channel; use POST /poll for several");
            }
            entries.Add((query["channel"].ToString(), Nullable(query["offset"]), Nullable(query["epoch"])));
            waitText = Nullable(query["wait"]);
            client = Nullable(query["client"]);
            if (tokenInfo is null && ParseQueryInfo(query, options, out info) is { } bad)
            {
                return bad;
            }
        }
        else
        {
            PollRequestBody? body;
            try
            {
                body = await JsonSerializer.DeserializeAsync(context.Request.Body, ProtocolJsonContext.Default.PollRequestBody, context.RequestAborted);
            }
            catch (JsonException ex)
            {
                return Fail(ErrorCodes.BadRequest, $"invalid JSON body ({ex.Path ?? "$"}); expected {{\"channels\":{{\"<channel>\":{{\"offset\":…,\"epoch\":…}}}},\"wait\":…,\"client\":\"…\",\"info\":{{…}}}}");
            }
            catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                return (null, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {options.MaxMessageBytes} bytes");
            }
            if (body?.Channels is not { Count: > 0 } channels)
            {
                return Fail(ErrorCodes.BadRequest, "'channels' must name at least one channel");
            }
            if (channels.Count > options.MaxPollChannels)
            {
                return Fail(ErrorCodes.BadRequest, $"a poll may name at most {options.MaxPollChannels} channels");
            }
            foreach (var (name, cursor) in channels)
            {
                entries.Add((name, cursor?.Offset?.ToString(CultureInfo.InvariantCulture), cursor?.Epoch));
            }
            waitText = body.Wait?.ToString("F6", CultureInfo.InvariantCulture);
            client = body.Client;
            info = tokenInfo is null ? body.Info : null;
        }

        if (CheckClient(client, info, options) is { } badClient)
        {
            return badClient;
        }

        var wait = TimeSpan.Zero;
        if (waitText is not null)
        {
            if (!double.TryParse(waitText, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds)
                || seconds < 0 || seconds > options.MaxPollWait.TotalSeconds)
            {
                return Fail(ErrorCodes.BadRequest, $"'wait' must be a number of seconds from 0 to {options.MaxPollWait.TotalSeconds:0.###}");
            }
            wait = TimeSpan.FromSeconds(seconds);
        }

        var (cursors, failure) = ResolveCursors(entries, options);
        if (cursors is null)
        {
            return Fail(failure!.Code, failure.Message);
        }
        return (new PollRequest(cursors, wait, client, tokenInfo ?? info), 0, null, null);

        static (PollRequest?, int, string?, string?) Fail(string code, string message) => (null, StatusCodes.Status400BadRequest, code, message);
    }

    /// <summary>The query value, or <see langword="null"/> when the parameter is absent.</summary>
    internal static string? Nullable(Microsoft.Extensions.Primitives.StringValues value) => value.Count == 0 ? null : value.ToString();

    /// <summary>
    /// Resolves each channel's name and namespace and reads its cursor (<c>offset</c> and <c>epoch</c>, both or neither).
    /// Shared by <c>/poll</c> and <c>/sse</c>, so that both read cursors by one rule.
    /// </summary>
    internal static (List<PollCursor>? Cursors, HeraldError? Error) ResolveCursors(IReadOnlyList<(string? Channel, string? Offset, string? Epoch)> entries, HeraldOptions options)
    {
        var cursors = new List<PollCursor>(entries.Count);
        foreach (var (channel, offsetText, epoch) in entries)
        {
            if (!Herald.Channels.ChannelService.Resolve(channel, options).TryGetValue(out var ns, out var invalid))
            {
                return (null, invalid);
            }
            StreamPosition? since = null;
            if (offsetText is not null || epoch is not null)
            {
                if (offsetText is null || epoch is null)
                {
                    return (null, new HeraldError(ErrorCodes.BadRequest, $"{channel}: 'offset' and 'epoch' go together"));
                }
                if (!ulong.TryParse(offsetText, NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
                {
                    return (null, new HeraldError(ErrorCodes.BadRequest, $"{channel}: 'offset' must be a non-negative integer"));
                }
                since = new StreamPosition(offset, epoch);
            }
            cursors.Add(new PollCursor(channel!, ns!, since));
        }
        return (cursors, null);
    }

    /// <summary>Reads the query's <c>info</c> (URL-encoded JSON), if any; returns the 4xx answer when it is refused.</summary>
    internal static (PollRequest?, int, string?, string?)? ParseQueryInfo(IQueryCollection query, HeraldOptions options, out JsonElement? info)
    {
        info = null;
        if (Nullable(query["info"]) is not { } infoText)
        {
            return null;
        }
        if (System.Text.Encoding.UTF8.GetByteCount(infoText) > options.MaxClientInfoBytes)
        {
            // Measured before parsing, so an oversized info costs no parse.
            return (null, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"'info' is larger than {options.MaxClientInfoBytes} bytes (Herald:MaxClientInfoBytes)");
        }
        try
        {
            using var parsed = JsonDocument.Parse(infoText);
            info = parsed.RootElement.Clone();
            return null;
        }
        catch (JsonException)
        {
            return (null, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "'info' must be a URL-encoded JSON object");
        }
    }

    /// <summary>Checks the client's own id and display info (both optional); returns the 4xx answer when one is refused.</summary>
    internal static (PollRequest?, int, string?, string?)? CheckClient(string? client, JsonElement? info, HeraldOptions options)
    {
        if (client is not null && !Herald.Presence.ClientInfoRules.IsValidClientId(client))
        {
            return (null, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"'client' must be 1 to {Herald.Presence.ClientInfoRules.MaxClientIdLength} characters of A-Z a-z 0-9 _ -");
        }
        if (info is { } offered && Herald.Presence.ClientInfoRules.Check(offered, options) is { } refused)
        {
            return (null, refused.Code == ErrorCodes.PayloadTooLarge ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest, refused.Code, refused.Message);
        }
        return null;
    }
}
