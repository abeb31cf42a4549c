using System.Security.Cryptography;
using System.Text.Json;
using Herald.Brokers;
using Herald.Channels;
using Herald.Handlers;
using Herald.Presence;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Herald.AspNetCore.Polling;

/// <summary>
/// <c>GET|POST /poll</c>: short polling (answer at once) and long polling (hold until a publication or the wait
/// ends). Stateless: each request carries its cursors, so any node can answer any poll.
/// </summary>
internal static class PollEndpoint
{
    public static async Task HandleAsync(HttpContext context, HeraldNode node, PollAnswerCache cache)
    {
        var options = node.Options;
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = options.MaxMessageBytes;
        }
        if (context.Request.ContentLength > options.MaxMessageBytes)
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, $"the body is larger than {options.MaxMessageBytes} bytes");
            return;
        }
        // Handlers know a poll by its own client id when a GET names one before the body is read, else by a fresh one;
        // without a connect or subscribe handler nobody sees it, so none is made.
        var clientId = context.Request.Query["client"] is { Count: 1 } named && ClientInfoRules.IsValidClientId(named.ToString())
            ? named.ToString()
            : node.Handlers.HandlesConnect || node.Handlers.HandlesSubscribe ? node.NewClientId() : "";
        if (await HttpAuth.AuthenticateAsync(context, node, HeraldTransportNames.Poll, clientId) is not { } auth)
        {
            return;
        }
        var (request, status, code, message) = await PollRequest.ParseAsync(context, options, auth.Info);
        if (request is null)
        {
            await HttpErrors.WriteAsync(context, status, code!, message!);
            return;
        }

        foreach (var cursor in request.Cursors)
        {
            if (ChannelService.AuthorizeRead(auth, cursor.Channel, cursor.Namespace, "polling") is { } denied)
            {
                await HttpErrors.WriteAsync(context, denied);
                return;
            }
        }
        if (node.Handlers.HandlesSubscribe)
        {
            var client = new ClientInfo(auth.User, request.Client ?? clientId) { Info = request.Info };
            foreach (var cursor in request.Cursors)
            {
                var allowed = await node.Handlers.SubscribeAsync(new SubscribeContext(client, HeraldTransportNames.Poll, cursor.Channel, auth), context.RequestAborted);
                if (allowed.Error is { } refused)
                {
                    // Reported like the other per-channel errors of a poll: the whole poll fails, naming the channel.
                    await HttpErrors.WriteAsync(context, refused with { Message = $"{cursor.Channel}: {refused.Message}" });
                    return;
                }
            }
        }
        // Counted once the poll is valid and allowed: a refused poll is nobody polling.
        node.Metrics.Polled(request.Wait > TimeSpan.Zero, request.Client, context.Connection.RemoteIpAddress?.GetHashCode() ?? 0);
        try
        {
            await AnswerAsync(context, node, cache, request, auth);
        }
        catch (BrokerUnavailableException)
        {
            if (!context.Response.HasStarted)
            {
                await HttpErrors.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ErrorCodes.Unavailable, "the broker cannot be reached");
            }
        }
    }

    private static async Task AnswerAsync(HttpContext context, HeraldNode node, PollAnswerCache cache, PollRequest request, Herald.Sessions.AuthenticationResult auth)
    {
        if (request.Client is { } client)
        {
            // A lease per channel, refreshed by every poll: the client counts as present between its polls too.
            foreach (var cursor in request.Cursors)
            {
                await node.Channels.TouchPollPresenceAsync(cursor.Channel, cursor.Namespace, client, auth.User, request.Info, request.Wait);
            }
        }
        var aborted = context.RequestAborted;
        var deadline = node.TimeProvider.GetUtcNow() + request.Wait;
        HeraldNode.PollInterest? parked = null;
        // A long poll parks before reading positions, so that a publication landing in between still wakes it; parking
        // also makes the node receive the channels from the broker. Once woken it reads without parking again, since it
        // almost always has news to answer with; only if not does it park and read once more.
        var mustPark = request.Wait > TimeSpan.Zero;
        var parkFirst = mustPark;
        try
        {
            while (true)
            {
                if (parkFirst && parked is null)
                {
                    parked = await node.ParkAsync(request.Channels, aborted);
                }
                var answers = new ChannelAnswer[request.Cursors.Count];
                var news = false;
                for (var i = 0; i < answers.Length; i++)
                {
                    var answer = await cache.AnswerAsync(node, request.Cursors[i], parked, aborted);
                    if (answer.Error is { } error)
                    {
                        await HttpErrors.WriteAsync(context, error with { Message = $"{request.Cursors[i].Channel}: {error.Message}" });
                        return;
                    }
                    answers[i] = answer;
                    news |= answer.HasNews;
                }
                var remaining = deadline - node.TimeProvider.GetUtcNow();
                if (news || !mustPark || remaining <= TimeSpan.Zero || node.Stopping.IsCancellationRequested)
                {
                    await WriteAnswerAsync(context, node, request, answers, news);
                    return;
                }
                if (parked is null)
                {
                    parkFirst = true;
                    continue; // woken without news for us: park, then read again
                }
                // WaitAsync drops its timer as soon as the poll is woken; nothing is left running until the deadline.
                var woken = parked.Woken;
                await woken.WaitAsync(remaining, node.TimeProvider, aborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (aborted.IsCancellationRequested)
                {
                    return; // the client went away: the interest is dropped below and nothing is written
                }
                if (woken.IsCompleted)
                {
                    parked.Dispose();
                    parked = null; // read on the next turn; park again only if that finds nothing
                    parkFirst = false;
                }
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
        }
        finally
        {
            parked?.Dispose();
        }
    }

    private static async Task WriteAnswerAsync(HttpContext context, HeraldNode node, PollRequest request, ChannelAnswer[] answers, bool news)
    {
        var response = context.Response;
        // "private, no-cache": a browser may keep the answer but must revalidate it (ETag → 304); shared caches must not keep it.
        response.Headers.CacheControl = "private, no-cache";
        // Only "nothing new" answers repeat, so only they get a validator; an answer with news moves the cursor.
        var etag = news ? null : ETagOf(answers);
        if (etag is not null)
        {
            response.Headers.ETag = etag;
        }
        if (etag is not null && context.Request.Headers.IfNoneMatch == etag)
        {
            node.Metrics.PollAnswered(hasData: false, notModified: true);
            response.StatusCode = StatusCodes.Status304NotModified;
            return;
        }
        node.Metrics.PollAnswered(news, notModified: false);
        // The exact length, sent as Content-Length: {"channels":{ and }}, then per channel "name": and its answer, and a
        // comma between channels.
        var length = 15 + answers.Length - 1;
        for (var i = 0; i < answers.Length; i++)
        {
            length += request.Cursors[i].Channel.Length + 3 + answers[i].Json.Length;
        }
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        response.ContentLength = length;
        // Written straight into Kestrel's output buffer, headers and body in one flush (one send), no chunking.
        var writer = response.BodyWriter;
        var body = writer.GetSpan(length);
        var at = Append(body, 0, "{\"channels\":{"u8);
        for (var i = 0; i < answers.Length; i++)
        {
            if (i > 0)
            {
                body[at++] = (byte)',';
            }
            body[at++] = (byte)'"';
            // Channel names never need escaping (see ChannelName), so they are copied as they are.
            at += System.Text.Encoding.ASCII.GetBytes(request.Cursors[i].Channel, body[at..]);
            at = Append(body, at, "\":"u8);
            at = Append(body, at, answers[i].Json.Span);
        }
        at = Append(body, at, "}}"u8);
        writer.Advance(at);
        await writer.FlushAsync(context.RequestAborted);
        node.Metrics.Sent(request.Wait > TimeSpan.Zero ? Herald.Diagnostics.DeliveryTransport.LongPoll : Herald.Diagnostics.DeliveryTransport.ShortPoll, msgPack: false, at);
        RecordDeliveries(node, request, answers);
    }

    // One delivery latency observation per publication in the answer, stamped when the body has been written.
    private static void RecordDeliveries(HeraldNode node, PollRequest request, ChannelAnswer[] answers)
    {
        var transport = request.Wait > TimeSpan.Zero ? Herald.Diagnostics.DeliveryTransport.LongPoll : Herald.Diagnostics.DeliveryTransport.ShortPoll;
        var written = System.Diagnostics.Stopwatch.GetTimestamp();
        foreach (var answer in answers)
        {
            if (answer.Publications is { } publications)
            {
                node.Metrics.DeliveriesWritten(transport, publications, written);
            }
        }
    }

    private static int Append(Span<byte> body, int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(body[at..]);
        return at + bytes.Length;
    }

    private static string ETagOf(ChannelAnswer[] answers)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var answer in answers)
        {
            hash.AppendData(answer.Json.Span);
        }
        Span<byte> digest = stackalloc byte[32];
        hash.GetHashAndReset(digest);
        return $"\"{Convert.ToHexStringLower(digest[..12])}\"";
    }
}
