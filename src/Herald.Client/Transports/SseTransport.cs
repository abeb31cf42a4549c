using System.Net;
using System.Text;
using System.Text.Json;
using Herald.Client.Json;
using Herald.Protocol;

namespace Herald.Client.Transports;

/// <summary>
/// Server-Sent Events: one <c>GET /sse</c> stream carries every subscription (recovered from its cursor, then live),
/// and commands go over <c>POST /cmd</c>. A stream's channels are fixed by its URL, so when the set of subscriptions
/// changes the stream is reopened from the subscriptions' cursors, which loses and repeats nothing.
/// </summary>
internal sealed class SseTransport : ClientTransport
{
    private CancellationTokenSource _wake = new();
    private readonly CancellationTokenSource _break = new();
    // The server's keep-alive interval from the stream's `connected` event: a stream silent for twice that is dead.
    private TimeSpan _silenceLimit;

    public SseTransport(HeraldClient client) : base(client) => _silenceLimit = client.Options.CommandTimeout + TimeSpan.FromSeconds(60);

    public override HeraldTransport Kind => HeraldTransport.Sse;

    // A stream opened by OpenAsync, read first by RunCoreAsync.
    private OpenedStream? _opened;

    public override async Task OpenAsync(CancellationToken cancellationToken)
    {
        // One round trip proves the server is reachable and takes our credentials. With subscriptions, the stream must
        // open too (its first event read), so that a network where streaming responses do not pass falls back at once.
        await CommandAsync(new Command { Op = Ops.Ping }, cancellationToken);
        var wake = Volatile.Read(ref _wake).Token;
        var subscriptions = Client.Subscriptions.ToList();
        if (subscriptions.Count > 0)
        {
            using var registration = cancellationToken.Register(static state => ((SseTransport)state!).Break(), this);
            try
            {
                _opened = await OpenStreamAsync(subscriptions, wake);
            }
            catch (ReopenException)
            {
                return; // the subscriptions changed meanwhile: RunCoreAsync opens the stream with the new set
            }
            if (_opened is not null && await ReadEventAsync(_opened) is { } end && end.Reason != Reopen)
            {
                throw end.Exception ?? new HeraldConnectionException(end.Reason);
            }
        }
    }

    public override Task<JsonElement> CommandAsync(Command command, CancellationToken cancellationToken) =>
        HttpCommands.SendAsync(Client, BaseUri, command, cancellationToken);

    public override void OnSubscribed(HeraldSubscription subscription) => Wake();

    public override ValueTask OnUnsubscribedAsync(HeraldSubscription subscription, CancellationToken cancellationToken)
    {
        Wake();
        return ValueTask.CompletedTask;
    }

    internal override void Break()
    {
        try
        {
            _break.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        Interlocked.Exchange(ref _opened, null)?.Dispose();
        _break.Dispose();
    }

    private void Wake() => Interlocked.Exchange(ref _wake, new CancellationTokenSource()).Cancel();

    protected override async Task<TransportEnd> RunCoreAsync()
    {
        try
        {
            while (!StopToken.IsCancellationRequested)
            {
                // Read the wake source before the snapshot, so a subscription added after it always reopens the stream.
                var wake = Volatile.Read(ref _wake).Token;
                var subscriptions = Client.Subscriptions.ToList();
                if (subscriptions.Count == 0)
                {
                    using var idle = CancellationTokenSource.CreateLinkedTokenSource(StopToken, wake, _break.Token);
                    await Task.Delay(Timeout.Infinite, idle.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    ThrowIfBroken();
                    continue;
                }
                try
                {
                    if (await StreamAsync(subscriptions, wake) is { } end)
                    {
                        return end;
                    }
                }
                catch (ReopenException)
                {
                    // the set of channels changed while the stream was opening: open it again with the new set
                }
            }
            return new TransportEnd(StopReason);
        }
        catch (OperationCanceledException) when (StopToken.IsCancellationRequested)
        {
            return new TransportEnd(StopReason);
        }
        catch (HeraldException ex) when (HeraldClient.IsFatalRefusal(ex))
        {
            return new TransportEnd($"{ex.Code}: {ex.Message}", ex, Fatal: true);
        }
        catch (Exception ex)
        {
            return new TransportEnd($"{Kind} failed: {ex.Message}", ex);
        }
    }

    private void ThrowIfBroken()
    {
        if (_break.IsCancellationRequested)
        {
            throw new HeraldConnectionException("the stream was broken");
        }
    }

    /// <summary>An open stream: the response, its reader, and what cancels it (a stop, a wake-up, a break).</summary>
    private sealed class OpenedStream(HttpResponseMessage response, StreamReader reader, CancellationTokenSource linked, List<HeraldSubscription> subscriptions) : IDisposable
    {
        public StreamReader Reader { get; } = reader;
        public CancellationTokenSource Linked { get; } = linked;
        public List<HeraldSubscription> Subscriptions { get; } = subscriptions;

        public void Dispose()
        {
            Reader.Dispose();
            response.Dispose();
            Linked.Dispose();
        }
    }

    /// <summary>
    /// Runs one stream until the set of subscriptions changes (returns <see langword="null"/>: reopen) or the server
    /// ends it (returns how the connection ended).
    /// </summary>
    private async Task<TransportEnd?> StreamAsync(List<HeraldSubscription> subscriptions, CancellationToken wake)
    {
        var opened = Interlocked.Exchange(ref _opened, null) ?? await OpenStreamAsync(subscriptions, wake);
        if (opened is null)
        {
            return null; // a channel was refused: reopen without it
        }
        using (opened)
        {
            while (true)
            {
                if (await ReadEventAsync(opened) is { } end)
                {
                    return end.Reason == Reopen ? null : end;
                }
            }
        }
    }

    private const string Reopen = "reopen";

    /// <summary>Sends <c>GET /sse</c>; returns the open stream, or <see langword="null"/> when one channel was refused (and dropped).</summary>
    private async Task<OpenedStream?> OpenStreamAsync(List<HeraldSubscription> subscriptions, CancellationToken wake)
    {
        var linked = CancellationTokenSource.CreateLinkedTokenSource(StopToken, wake, _break.Token);
        HttpResponseMessage? response = null;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, StreamUri(subscriptions));
            request.Headers.Accept.ParseAdd("text/event-stream");
            await HttpCommands.AuthorizeAsync(Client, request, linked.Token);
            using var opening = CancellationTokenSource.CreateLinkedTokenSource(linked.Token);
            opening.CancelAfter(Client.Options.CommandTimeout);
            response = await Client.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, opening.Token);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                var body = await response.Content.ReadAsByteArrayAsync(opening.Token);
                var error = HttpCommands.ErrorOf(response.StatusCode, body, "GET /sse");
                if (error is HeraldException refused && IsChannelRefusal(refused) && Refused(subscriptions, refused) is { } culprit)
                {
                    Client.OnSubscriptionRefused(culprit, refused);
                    response.Dispose();
                    linked.Dispose();
                    return null;
                }
                throw error;
            }
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync(linked.Token), Encoding.UTF8);
            return new OpenedStream(response, reader, linked, subscriptions);
        }
        catch (Exception ex)
        {
            response?.Dispose();
            linked.Dispose();
            throw Translate(ex, wake);
        }
    }

    private Exception Translate(Exception ex, CancellationToken wake) => ex switch
    {
        OperationCanceledException when StopToken.IsCancellationRequested => ex,
        OperationCanceledException when _break.IsCancellationRequested => new HeraldConnectionException("the stream was broken"),
        OperationCanceledException when wake.IsCancellationRequested => new ReopenException(),
        OperationCanceledException => new HeraldConnectionException($"the stream did not open or was silent for too long"),
        HttpRequestException http => new HeraldConnectionException($"GET /sse failed: {http.Message}", http),
        _ => ex,
    };

    private sealed class ReopenException : Exception;

    private Uri StreamUri(List<HeraldSubscription> subscriptions)
    {
        var query = new StringBuilder();
        foreach (var subscription in subscriptions)
        {
            query.Append(query.Length == 0 ? '?' : '&').Append("channel=").Append(Uri.EscapeDataString(subscription.Channel));
        }
        // offset and epoch once per channel, in the same order; empty for a channel without a cursor yet.
        if (subscriptions.Any(s => s.Position is not null))
        {
            foreach (var subscription in subscriptions)
            {
                query.Append("&offset=").Append(subscription.Position?.Offset.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            foreach (var subscription in subscriptions)
            {
                query.Append("&epoch=").Append(subscription.Position is { } p ? Uri.EscapeDataString(p.Epoch) : "");
            }
        }
        if (Client.ClientId is { } id)
        {
            query.Append("&client=").Append(Uri.EscapeDataString(id));
        }
        if (Client.Info is { } info)
        {
            query.Append("&info=").Append(Uri.EscapeDataString(info.GetRawText()));
        }
        return new Uri(HeraldClient.ResolveHttp(BaseUri, Client.Options.SsePath) + query.ToString());
    }

    /// <summary>Reads up to the next event and handles it; returns how the connection ended, if it did.</summary>
    private async Task<TransportEnd?> ReadEventAsync(OpenedStream opened)
    {
        var data = new StringBuilder();
        try
        {
            while (true)
            {
                // The server writes a comment at its keep-alive interval; a stream silent for longer is cut.
                using var silence = CancellationTokenSource.CreateLinkedTokenSource(opened.Linked.Token);
                silence.CancelAfter(_silenceLimit);
                var line = await opened.Reader.ReadLineAsync(silence.Token)
                    ?? throw new HeraldConnectionException("the server ended the stream without a close event");
                if (line.Length == 0)
                {
                    if (data.Length == 0)
                    {
                        continue;
                    }
                    var message = JsonSerializer.Deserialize(data.ToString(), ClientJsonContext.Default.ServerMessage)
                        ?? throw new HeraldConnectionException("the server sent a JSON null");
                    return await HandleAsync(message);
                }
                if (line.StartsWith("data:", StringComparison.Ordinal))
                {
                    data.Append(line.AsSpan(line.Length > 5 && line[5] == ' ' ? 6 : 5));
                }
                // Comments (heartbeats) and ids need nothing: the subscriptions keep their own cursors.
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or HttpRequestException or IOException)
        {
            var translated = Translate(ex is IOException io ? new HttpRequestException(io.Message, io) : ex, opened.Linked.Token);
            if (translated is ReopenException)
            {
                return new TransportEnd(Reopen);
            }
            throw translated;
        }
    }

    private async ValueTask<TransportEnd?> HandleAsync(ServerMessage message)
    {
        if (message.Push is { Channel: { } channel, Pub: { } pub })
        {
            if (Client.TryGetSubscription(channel, out var subscription))
            {
                await subscription.DeliverAsync(pub, null, StopToken);
            }
        }
        else if (message.Push is { Channel: { } skippedIn, Skipped: { } skipped })
        {
            if (Client.TryGetSubscription(skippedIn, out var subscription))
            {
                subscription.Skip(skipped, null);
            }
        }
        else if (message.Subscribed is { Channel: { } subscribedChannel } subscribed)
        {
            if (Client.TryGetSubscription(subscribedChannel, out var subscription))
            {
                await subscription.ApplyAsync(new StreamResultMessage
                {
                    Epoch = subscribed.Epoch,
                    Offset = subscribed.Offset,
                    Recovered = subscribed.Recovered,
                    Publications = subscribed.Publications,
                    Skipped = subscribed.Skipped,
                }, StopToken);
                subscription.MarkReady();
            }
        }
        else if (message.Connected is { Ping: { } ping } && ping > 0)
        {
            _silenceLimit = TimeSpan.FromSeconds(ping * 2) + TimeSpan.FromSeconds(5);
        }
        else if (message.Close is { } close)
        {
            var reason = $"closed {close.Code}: {close.Reason}";
            return close.Code == CloseCodes.Unauthorized
                ? new TransportEnd(reason, new HeraldException(ErrorCodes.Unauthorized, close.Reason ?? "unauthorized"), Fatal: true)
                : new TransportEnd(reason);
        }
        return null;
    }

    private static bool IsChannelRefusal(HeraldException ex) =>
        ex.Code is ErrorCodes.InvalidChannel or ErrorCodes.PermissionDenied or ErrorCodes.InvalidPosition;

    // The server names the refused channel at the start of its message ("chat:x: …"); with one channel it is that one.
    private static HeraldSubscription? Refused(List<HeraldSubscription> subscriptions, HeraldException refused) =>
        subscriptions.Count == 1
            ? subscriptions[0]
            : subscriptions.FirstOrDefault(s => refused.Message.StartsWith(s.Channel + ":", StringComparison.Ordinal))
              ?? subscriptions.FirstOrDefault(s => refused.Message.Contains(s.Channel, StringComparison.Ordinal));
}
