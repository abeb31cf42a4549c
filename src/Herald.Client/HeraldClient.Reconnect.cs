using Herald.Client.Transports;

namespace Herald.Client;

public sealed partial class HeraldClient
{
    private HeraldTransport? _preferred;
    private bool _switchRequested;

    /// <summary>
    /// The connection loop: tries the transports in order, falls back on failure, stays on a transport while it
    /// works, and waits an exponentially growing, jittered delay after every round that failed.
    /// </summary>
    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var everConnected = false;
        var failedRounds = 0;
        var failures = new List<Exception>();
        while (!cancellationToken.IsCancellationRequested)
        {
            failures.Clear();
            var connectedThisRound = false;
            var switching = false;
            foreach (var kind in TransportOrder())
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    break;
                }
                SetState(HeraldConnectionState.Connecting, kind);
                var transport = CreateTransport(kind);
                try
                {
                    using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    attempt.CancelAfter(Options.ConnectTimeout);
                    await transport.OpenAsync(attempt.Token);
                }
                catch (Exception ex)
                {
                    await transport.DisposeAsync();
                    if (cancellationToken.IsCancellationRequested)
                    {
                        break;
                    }
                    if (ex is HeraldException { Code: Protocol.ErrorCodes.Unauthorized })
                    {
                        // Other transports would present the same credentials; retrying cannot help.
                        FinishLoop(ex, $"unauthorized: {ex.Message}");
                        return;
                    }
                    failures.Add(new HeraldConnectionException($"{kind}: {ex.Message}", ex));
                    continue;
                }

                connectedThisRound = true;
                everConnected = true;
                failedRounds = 0;
                var ended = await RunConnectedAsync(kind, transport, cancellationToken);
                if (ended.Fatal)
                {
                    FinishLoop(ended.Exception, ended.Reason);
                    return;
                }
                lock (_gate)
                {
                    switching = _switchRequested;
                    _switchRequested = false;
                    if (!switching)
                    {
                        // Stay with what worked: the next round starts with this transport.
                        _preferred = kind;
                    }
                }
                break;
            }

            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            if (!everConnected)
            {
                var error = new HeraldConnectionException(
                    $"Could not connect to {Options.BaseUri} with any transport: {string.Join("; ", failures.Select(f => f.Message))}",
                    failures.Count == 1 ? failures[0] : new AggregateException(failures));
                FinishLoop(error, error.Message);
                return;
            }
            if (!connectedThisRound)
            {
                SetState(HeraldConnectionState.Disconnected, null, $"no transport could connect: {string.Join("; ", failures.Select(f => f.Message))}");
            }
            if (switching)
            {
                continue;
            }
            try
            {
                await Task.Delay(ComputeBackoff(failedRounds++, Options.ReconnectMinDelay, Options.ReconnectMaxDelay, Options.ReconnectJitter, NextJitterSample()), cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        SetState(HeraldConnectionState.Disconnected, null, "client disposed");
    }

    private async Task<TransportEnd> RunConnectedAsync(HeraldTransport kind, ClientTransport transport, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _current = transport;
        }
        SetState(HeraldConnectionState.Connected, kind);
        lock (_gate)
        {
            _connected.TrySetResult(transport);
            _firstConnect?.TrySetResult();
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
        SetState(HeraldConnectionState.Disconnected, null, reason, error);
    }

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
