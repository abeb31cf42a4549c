using Herald.Client.Transports;

namespace Herald.Client;

public sealed partial class HeraldClient
{
    private HeraldTransport? _preferred;
    // Whether the connection loop runs (set by ConnectAsync, cleared by the loop as its last step under _gate), so
    // that a switch is never queued for a loop that will not take it.
    private bool _running;
    // A SwitchTransportAsync call the loop has not taken yet.
    private SwitchRequest? _pendingSwitch;
    // The attempt or backoff delay in progress, which a switch cuts short.
    private CancellationTokenSource? _interrupt;

    /// <summary>
    /// The connection loop: tries the transports in order, falls back on failure, stays on a transport while it
    /// works, and waits an exponentially growing, jittered delay after every round that failed. A pending switch
    /// takes the next attempt, without a delay.
    /// </summary>
    private async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await RunRoundsAsync(cancellationToken);
        }
        catch (Exception ex)
        {
            // A bug of ours must not leave ConnectAsync and SwitchTransportAsync callers waiting forever.
            FinishLoop(ex, $"the connection loop failed: {ex.Message}");
        }
        finally
        {
            lock (_gate)
            {
                _running = false;
                _pendingSwitch?.Fail(new HeraldTransportSwitchException(_pendingSwitch.Kind, "The client stopped before the switch."));
                _pendingSwitch = null;
            }
        }
    }

    private async Task RunRoundsAsync(CancellationToken cancellationToken)
    {
        var everConnected = false;
        var failedRounds = 0;
        var failures = new List<Exception>();
        while (!cancellationToken.IsCancellationRequested)
        {
            failures.Clear();
            var connectedThisRound = false;
            var order = new Queue<HeraldTransport>(TransportOrder());
            while (!cancellationToken.IsCancellationRequested)
            {
                HeraldTransport kind;
                var request = TakePendingSwitch();
                if (request is not null)
                {
                    kind = request.Kind;
                    // If the switch's one attempt fails, fall back the way a first connect does.
                    order = new Queue<HeraldTransport>(FallbackOrder().Where(k => k != request.Kind));
                }
                else if (!order.TryDequeue(out kind))
                {
                    break;
                }
                SetState(HeraldConnectionState.Connecting, kind);
                var transport = CreateTransport(kind);
                var (failure, interrupted) = await OpenAsync(transport, cancellationToken);
                if (failure is not null)
                {
                    await transport.DisposeAsync();
                    if (cancellationToken.IsCancellationRequested)
                    {
                        request?.Fail(new HeraldTransportSwitchException(kind, "The client was disposed before the switch.", failure));
                        break;
                    }
                    if (failure is HeraldException refusal && IsFatalRefusal(refusal))
                    {
                        // Other transports would present the same credentials and info; retrying cannot help.
                        request?.Fail(new HeraldTransportSwitchException(kind, $"Could not switch to {kind}: {failure.Message}", failure));
                        FinishLoop(failure, $"{refusal.Code}: {failure.Message}");
                        return;
                    }
                    if (interrupted)
                    {
                        // A newer switch cut this attempt short: not the transport's failure, and the next step takes it.
                        request?.Fail(new HeraldTransportSwitchException(kind, $"The switch to {kind} was superseded by another switch.", failure));
                        continue;
                    }
                    failures.Add(new HeraldConnectionException($"{kind}: {failure.Message}", failure));
                    request?.Fail(new HeraldTransportSwitchException(
                        kind,
                        $"Could not switch to {kind}: {failure.Message.TrimEnd('.')}; the client falls back to its other transports.",
                        failure));
                    continue;
                }

                connectedThisRound = true;
                everConnected = true;
                failedRounds = 0;
                var ended = await RunConnectedAsync(kind, transport, request, cancellationToken);
                if (ended.Fatal)
                {
                    FinishLoop(ended.Exception, ended.Reason);
                    return;
                }
                break;
            }

            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            // A first connect gives up once every address had a round (with BaseUris, one address per attempt).
            if (!everConnected && failedRounds + 1 >= Math.Max(1, Options.BaseUris.Count))
            {
                var error = new HeraldConnectionException(
                    $"Could not connect to {(Options.BaseUris.Count == 0 ? Options.BaseUri : string.Join(", ", Options.BaseUris))} with any transport: {string.Join("; ", failures.Select(f => f.Message))}",
                    failures.Count == 1 ? failures[0] : new AggregateException(failures));
                FinishLoop(error, error.Message);
                return;
            }
            if (!connectedThisRound)
            {
                SetState(HeraldConnectionState.Disconnected, null, $"no transport could connect: {string.Join("; ", failures.Select(f => f.Message))}");
            }
            if (!await BackoffAsync(ComputeBackoff(failedRounds++, Options.ReconnectMinDelay, Options.ReconnectMaxDelay, Options.ReconnectJitter, NextJitterSample()), cancellationToken))
            {
                break;
            }
        }
        SetState(HeraldConnectionState.Disconnected, null, "client disposed");
    }

    /// <summary>
    /// Opens <paramref name="transport"/> within <see cref="HeraldClientOptions.ConnectTimeout"/>. Returns the failure,
    /// if any, and whether a switch request cut the attempt short.
    /// </summary>
    private async Task<(Exception? Failure, bool Interrupted)> OpenAsync(ClientTransport transport, CancellationToken cancellationToken)
    {
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        attempt.CancelAfter(Options.ConnectTimeout);
        lock (_gate)
        {
            _interrupt = attempt;
        }
        try
        {
            await transport.OpenAsync(attempt.Token);
            return (null, false);
        }
        catch (Exception ex)
        {
            bool interrupted;
            lock (_gate)
            {
                interrupted = attempt.IsCancellationRequested && _pendingSwitch is not null;
            }
            return (ex, interrupted);
        }
        finally
        {
            lock (_gate)
            {
                _interrupt = null;
            }
        }
    }

    /// <summary>Waits out a reconnect delay; a switch request ends it early. Returns <see langword="false"/> once the client is stopping.</summary>
    private async Task<bool> BackoffAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        lock (_gate)
        {
            if (_pendingSwitch is not null)
            {
                // A switch is a deliberate reconnect, not a failure to back off from.
                return true;
            }
            _interrupt = wait;
        }
        try
        {
            await Task.Delay(delay, wait.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // Woken by a switch request.
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        finally
        {
            lock (_gate)
            {
                _interrupt = null;
            }
        }
        return true;
    }

    /// <summary>
    /// A refusal of the connection itself that no retry can cure: the credentials (<c>unauthorized</c>), or what the
    /// client sends on every connect or poll being over a server limit (<c>payload_too_large</c>: the
    /// <see cref="HeraldClientOptions.Info"/> over <c>Herald:MaxClientInfoBytes</c>, or a poll body over
    /// <c>Herald:MaxMessageBytes</c>). Reconnecting would send the same again, forever; the client stops and reports
    /// it instead. (A poll body that large needs a server whose limits were lowered or raised from their defaults: 64
    /// channels of 255 characters fit in 64 KiB. The client only polls when the WebSocket failed first.)
    /// </summary>
    internal static bool IsFatalRefusal(HeraldException refusal) =>
        refusal.Code is Protocol.ErrorCodes.Unauthorized or Protocol.ErrorCodes.PayloadTooLarge;

    /// <summary>
    /// A refusal of one command that says "not now" rather than "no": the connection's command rate
    /// (<c>rate_limited</c>) or a failure inside the server (<c>internal</c>). A subscription refused so is asked for
    /// again after a backoff instead of ending.
    /// </summary>
    internal static bool IsTransientRefusal(HeraldException refusal) =>
        refusal.Code is Protocol.ErrorCodes.RateLimited or Protocol.ErrorCodes.Internal;

    private SwitchRequest? TakePendingSwitch()
    {
        lock (_gate)
        {
            var request = _pendingSwitch;
            _pendingSwitch = null;
            return request;
        }
    }

    private async Task<TransportEnd> RunConnectedAsync(HeraldTransport kind, ClientTransport transport, SwitchRequest? request, CancellationToken cancellationToken)
    {
        HeraldTransport? switchTo;
        lock (_gate)
        {
            _current = transport;
            // Stay with what worked: the next round starts with this transport.
            _preferred = kind;
            // A switch asked for while this attempt was finishing found no connection to stop; stop it here.
            switchTo = _pendingSwitch?.Kind;
        }
        SetState(HeraldConnectionState.Connected, kind);
        lock (_gate)
        {
            _connected.TrySetResult(transport);
            _firstConnect?.TrySetResult();
        }
        // After the Connected event, so that the caller of SwitchTransportAsync sees the new transport in place.
        request?.Succeed();
        if (switchTo is { } to)
        {
            transport.Stop($"switching to {to}");
        }
        TransportEnd ended;
        try
        {
            ended = await transport.RunAsync(cancellationToken);
        }
        catch (Exception ex)
        {
            ended = new TransportEnd($"transport failed: {ex.Message}", ex);
        }
        lock (_gate)
        {
            _current = null;
            if (_connected.Task.IsCompleted)
            {
                _connected = NewConnectedSource();
            }
        }
        await transport.DisposeAsync();
        SetState(HeraldConnectionState.Disconnected, kind, ended.Reason, ended.Exception);
        return ended;
    }

    private void FinishLoop(Exception? error, string reason)
    {
        lock (_gate)
        {
            error ??= new HeraldConnectionException(reason);
            _firstConnect?.TrySetException(error);
            _connected.TrySetException(error);
            _connected = NewConnectedSource();
        }
        // Subscriptions already confirmed stay, to resume if ConnectAsync() is called again; one still waiting for its
        // confirmation would otherwise wait out its timeout and report only that.
        foreach (var subscription in _subscriptions.Values)
        {
            subscription.FailReady(error);
        }
        SetState(HeraldConnectionState.Disconnected, null, reason, error);
    }

    /// <summary>The order a first connect uses: the forced transport, or the configured ones.</summary>
    private List<HeraldTransport> FallbackOrder() =>
        Options.ForcedTransport is { } forced ? [forced] : Options.Transports.Distinct().ToList();

    /// <summary>The transports to try this round: the forced one, or the configured order starting at the preferred one.</summary>
    private List<HeraldTransport> TransportOrder()
    {
        if (Options.ForcedTransport is { } forced)
        {
            return [forced];
        }
        var order = Options.Transports.Distinct().ToList();
        HeraldTransport? preferred;
        lock (_gate)
        {
            preferred = _preferred;
        }
        if (preferred is { } p)
        {
            var at = order.IndexOf(p);
            if (at < 0)
            {
                order.Insert(0, p);
            }
            else
            {
                order = [.. order.Skip(at), .. order.Take(at)];
            }
        }
        return order;
    }

    /// <summary>
    /// The delay before reconnect round <paramref name="attempt"/> (0-based): <paramref name="min"/> doubled per
    /// failed round, capped at <paramref name="max"/>, minus a random share of up to <paramref name="jitter"/>.
    /// </summary>
    internal static TimeSpan ComputeBackoff(int attempt, TimeSpan min, TimeSpan max, double jitter, double sample)
    {
        var grown = min.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt, 0, 30));
        var capped = Math.Min(grown, max.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (1 - (jitter * Math.Clamp(sample, 0, 1))));
    }

#pragma warning disable CA5394 // Jitter spreads reconnects out; it needs no cryptographic strength.
    private static double NextJitterSample() => Random.Shared.NextDouble();
#pragma warning restore CA5394
}
