using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Herald.Client.Json;
using Herald.Protocol;

namespace Herald.Client.Transports;

/// <summary>
/// Long and short polling: <c>POST /poll</c> with every channel's cursor (held by the server when long polling),
/// and commands over <c>POST /cmd</c>. The server keeps no state between requests, so a "connection" is just this
/// loop; it ends when a request fails.
/// </summary>
internal sealed class PollingTransport : ClientTransport
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    private readonly bool _longPoll;
    // Channels whose first answer on this connection has arrived; new ones are polled at once, without waiting.
    private readonly ConcurrentDictionary<string, HeraldSubscription> _confirmed = new(StringComparer.Ordinal);
    private CancellationTokenSource _wake = new();
    // Cancelled by Break(): the poll in flight (or the next one) is cancelled and the connection fails.
    private readonly CancellationTokenSource _break = new();

    public PollingTransport(HeraldClient client, bool longPoll) : base(client) => _longPoll = longPoll;

    public override HeraldTransport Kind => _longPoll ? HeraldTransport.LongPoll : HeraldTransport.ShortPoll;

    public override async Task OpenAsync(CancellationToken cancellationToken)
    {
        // One round trip proves the server is reachable and takes our credentials.
        await CommandAsync(new Command { Op = Ops.Ping }, cancellationToken);
    }

    public override void OnSubscribed(HeraldSubscription subscription) => Wake();

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _break.Dispose();
    }

    internal override void Break()
    {
        try
        {
            _break.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed meanwhile: the connection is gone already.
        }
    }

    public override ValueTask OnUnsubscribedAsync(HeraldSubscription subscription, CancellationToken cancellationToken)
    {
        // Polling holds no server-side subscription: leaving the channel out of the next poll is enough.
        _confirmed.TryRemove(new(subscription.Channel, subscription));
        Wake();
        return ValueTask.CompletedTask;
    }

    private void Wake()
    {
        var previous = Interlocked.Exchange(ref _wake, new CancellationTokenSource());
        // Not disposed: the poll loop may still be linking to its token, and a timer-less source holds nothing.
        previous.Cancel();
    }

    protected override async Task<TransportEnd> RunCoreAsync()
    {
        try
        {
            while (!StopToken.IsCancellationRequested)
            {
                // Read the wake source before the snapshot, so a subscription added after it always wakes us.
                var wake = Volatile.Read(ref _wake).Token;
                var all = Client.Subscriptions.ToList();
                if (all.Count == 0)
                {
                    await WaitAsync(Timeout.InfiniteTimeSpan, wake);
                    continue;
                }
                var fresh = all.Where(s => !_confirmed.TryGetValue(s.Channel, out var c) || !ReferenceEquals(c, s)).ToList();
                if (fresh.Count > 0)
                {
                    await PollNewAsync(fresh);
                    continue;
                }
                using (var linked = CancellationTokenSource.CreateLinkedTokenSource(StopToken, wake))
                {
                    PollAnswerMessage? answer;
                    try
                    {
                        answer = await PollAsync(all, _longPoll ? Client.Options.LongPollWait : TimeSpan.Zero, linked.Token);
                    }
                    catch (OperationCanceledException) when (wake.IsCancellationRequested && !StopToken.IsCancellationRequested)
                    {
                        // The set of channels changed while the poll was held: ask again with the new set.
                        continue;
                    }
                    await ApplyAsync(all, answer);
                }
                if (!_longPoll)
                {
                    await WaitAsync(Client.Options.ShortPollInterval, wake);
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

    /// <summary>
    /// The first poll of channels new to this connection, answered at once. A channel the server refuses would fail
    /// the whole poll, so on a refusal each channel is tried alone and only the refused ones are dropped.
    /// </summary>
    private async Task PollNewAsync(List<HeraldSubscription> fresh)
    {
        try
        {
            await ApplyAsync(fresh, await PollAsync(fresh, TimeSpan.Zero, StopToken));
            return;
        }
        catch (HeraldException ex) when (IsChannelRefusal(ex) && fresh.Count == 1)
        {
            Client.OnSubscriptionRefused(fresh[0], ex);
            return;
        }
        catch (HeraldException ex) when (IsChannelRefusal(ex))
        {
        }
        foreach (var subscription in fresh)
        {
            try
            {
                await ApplyAsync([subscription], await PollAsync([subscription], TimeSpan.Zero, StopToken));
            }
            catch (HeraldException ex) when (IsChannelRefusal(ex))
            {
                Client.OnSubscriptionRefused(subscription, ex);
            }
        }
    }

    private static bool IsChannelRefusal(HeraldException ex) =>
        ex.Code is ErrorCodes.InvalidChannel or ErrorCodes.PermissionDenied or ErrorCodes.InvalidPosition;

    private async Task ApplyAsync(List<HeraldSubscription> polled, PollAnswerMessage answer)
    {
        if (answer.Channels is not { } channels)
        {
            return;
        }
        foreach (var subscription in polled)
        {
            // Skip channels unsubscribed while the poll was out.
            if (!channels.TryGetValue(subscription.Channel, out var entry)
                || !Client.TryGetSubscription(subscription.Channel, out var current)
                || !ReferenceEquals(current, subscription))
            {
                continue;
            }
            await subscription.ApplyAsync(entry, StopToken);
            _confirmed[subscription.Channel] = subscription;
            subscription.MarkReady();
        }
    }

    private async Task<PollAnswerMessage> PollAsync(List<HeraldSubscription> subscriptions, TimeSpan wait, CancellationToken cancellationToken)
    {
        // The client id and info make the client present in the channels it polls, until shortly after its last poll.
        var channels = new Dictionary<string, SincePosition?>(subscriptions.Count, StringComparer.Ordinal);
        foreach (var subscription in subscriptions)
        {
            // A null cursor is written as JSON null: "no cursor yet", a first poll that learns the position.
            channels[subscription.Channel] = subscription.Position is { } p ? new SincePosition { Offset = p.Offset, Epoch = p.Epoch } : null;
        }
        var body = new PollRequestBody { Channels = channels, Wait = wait > TimeSpan.Zero ? wait.TotalSeconds : null, Client = Client.ClientId, Info = Client.Info };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _break.Token);
        // The server answers by `wait`; past that plus a margin the request (or a proxy on the way) is stuck.
        deadline.CancelAfter(wait + Client.Options.CommandTimeout);
        using var request = new HttpRequestMessage(HttpMethod.Post, HeraldClient.ResolveHttp(BaseUri, Client.Options.PollPath))
        {
            Content = Body(JsonSerializer.SerializeToUtf8Bytes(body, ClientJsonContext.Default.PollRequestBody)),
        };
        await AuthorizeAsync(request, deadline.Token);
        try
        {
            using var response = await Client.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
            var bytes = await response.Content.ReadAsByteArrayAsync(deadline.Token);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw ErrorOf(response.StatusCode, bytes);
            }
            return JsonSerializer.Deserialize(bytes, ClientJsonContext.Default.PollAnswerMessage)
                ?? throw new HeraldConnectionException("the poll answer was JSON null");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && _break.IsCancellationRequested)
        {
            throw new HeraldConnectionException("the poll request was cancelled");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new HeraldConnectionException($"the poll got no answer within {(wait + Client.Options.CommandTimeout).TotalSeconds:0.#} s");
        }
    }

    public override async Task<JsonElement> CommandAsync(Command command, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, HeraldClient.ResolveHttp(BaseUri, Client.Options.CommandPath))
        {
            Content = Body(JsonSerializer.SerializeToUtf8Bytes(command, ClientJsonContext.Default.Command)),
        };
        await AuthorizeAsync(request, cancellationToken);
        byte[] bytes;
        HttpStatusCode status;
        try
        {
            using var response = await Client.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            status = response.StatusCode;
            bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new HeraldConnectionException($"POST /{Client.Options.CommandPath} failed: {ex.Message}", ex);
        }
        ServerMessage? reply;
        try
        {
            reply = JsonSerializer.Deserialize(bytes, ClientJsonContext.Default.ServerMessage);
        }
        catch (JsonException ex)
        {
            throw new HeraldConnectionException($"POST /{Client.Options.CommandPath} answered {(int)status} without a JSON reply", ex);
        }
        if (reply?.Error is { } error)
        {
            throw ToException(error);
        }
        if (status != HttpStatusCode.OK || reply?.Result is not { } result)
        {
            throw new HeraldConnectionException($"POST /{Client.Options.CommandPath} answered {(int)status}");
        }
        return result;
    }

    private static ByteArrayContent Body(byte[] json)
    {
        var content = new ByteArrayContent(json);
        content.Headers.ContentType = Json;
        return content;
    }

    private async Task AuthorizeAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (await Client.GetTokenAsync(cancellationToken) is { Length: > 0 } token)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }

    private static Exception ErrorOf(HttpStatusCode status, byte[] body)
    {
        try
        {
            if (JsonSerializer.Deserialize(body, ClientJsonContext.Default.HttpErrorBody)?.Error is { } error)
            {
                return ToException(error);
            }
        }
        catch (JsonException)
        {
        }
        return new HeraldConnectionException($"the poll answered {(int)status}");
    }

    /// <summary>Waits for <paramref name="delay"/> or a wake-up; a stop ends the wait with an exception.</summary>
    private async Task WaitAsync(TimeSpan delay, CancellationToken wake)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(StopToken, wake);
        try
        {
            await Task.Delay(delay, linked.Token);
        }
        catch (OperationCanceledException) when (wake.IsCancellationRequested && !StopToken.IsCancellationRequested)
        {
        }
    }

}
