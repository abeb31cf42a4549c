using Herald.Client.Transports;

namespace Herald.Client;

public sealed partial class HeraldClient
{
    private CancellationTokenSource? _runCts;
    private Task? _runTask;
    private TaskCompletionSource? _firstConnect;
    private TaskCompletionSource<ClientTransport> _connected = NewConnectedSource();
    private ClientTransport? _current;

    /// <summary>
    /// Connects with the first transport that works (or the forced one) and keeps the client connected from then on,
    /// reconnecting by itself. Calling it again while running just waits for a connection.
    /// </summary>
    /// <exception cref="HeraldConnectionException">No transport could connect in the first round of attempts.</exception>
    /// <exception cref="HeraldException">
    /// The server refused the connection in a way no retry can cure: the credentials (<c>unauthorized</c>; an oversized
    /// token is refused so too), or the <see cref="HeraldClientOptions.Info"/> over <c>Herald:MaxClientInfoBytes</c>
    /// (<c>payload_too_large</c>).
    /// </exception>
    public async ValueTask ConnectAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        Task first;
        lock (_gate)
        {
            // Not _runTask.IsCompleted: a loop that has finished (unauthorized, nothing could connect) may still be
            // unwinding, and a new call must start a new loop rather than see the old one's failure.
            if (!_running)
            {
                _firstConnect = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                // The previous loop, if any, cleared _running as its very last step: its token is no longer used.
                _runCts?.Dispose();
                _runCts = new CancellationTokenSource();
                _running = true;
                var token = _runCts.Token;
                _runTask = Task.Run(() => RunAsync(token), CancellationToken.None);
            }
            first = _firstConnect!.Task;
        }
        await first.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Drops the current connection and makes one attempt to connect over <paramref name="transport"/>, recovering
    /// every subscription from its cursor. Returns once connected over that transport.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The switch is one attempt, never a wait for luck: if the attempt on <paramref name="transport"/> fails (or the
    /// connection is dropped during it), the method throws <see cref="HeraldTransportSwitchException"/> and the client
    /// falls back to its configured transports (<see cref="HeraldClientOptions.Transports"/>, in order, without the
    /// one that just failed) as it does after any failed attempt. Either way no publication is lost or repeated:
    /// subscriptions resume from their cursors on whatever transport connects.
    /// </para>
    /// <para>
    /// A switch requested while the client is connecting or waiting to reconnect cuts that short and is tried next.
    /// A switch requested while another is pending supersedes it; the earlier call throws
    /// <see cref="HeraldTransportSwitchException"/>. Asking for the transport already in use reconnects over it.
    /// </para>
    /// </remarks>
    /// <param name="transport">The transport to connect over.</param>
    /// <param name="cancellationToken">
    /// Cancels the wait. Cancelled before the call, nothing happens: the current connection stays. Cancelled later, a
    /// switch not yet started is withdrawn (the client reconnects as usual) and one already under way goes on.
    /// </param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="transport"/> is not a <see cref="HeraldTransport"/>.</exception>
    /// <exception cref="InvalidOperationException">The client is not running, or <see cref="HeraldClientOptions.ForcedTransport"/> names another transport.</exception>
    /// <exception cref="HeraldTransportSwitchException">
    /// The attempt on <paramref name="transport"/> failed and the client fell back, a later switch superseded this
    /// one, or the client stopped (disposed, or refused with <c>unauthorized</c> or <c>payload_too_large</c>) before the
    /// switch landed.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled first.</exception>
    public async ValueTask SwitchTransportAsync(HeraldTransport transport, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        if (!Enum.IsDefined(transport))
        {
            throw new ArgumentOutOfRangeException(nameof(transport), transport, "unknown transport");
        }
        if (Options.ForcedTransport is { } forced && forced != transport)
        {
            throw new InvalidOperationException($"The client is forced to use {forced}.");
        }
        // Cancelled before the call: nothing is queued and the connection is left alone. Checked here rather than
        // left to the wait below, which returns normally when the loop happened to finish the switch first.
        cancellationToken.ThrowIfCancellationRequested();
        var request = new SwitchRequest(transport);
        SwitchRequest? superseded;
        ClientTransport? current;
        CancellationTokenSource? interrupt;
        lock (_gate)
        {
            if (!_running)
            {
                throw new InvalidOperationException("Call ConnectAsync() before SwitchTransportAsync().");
            }
            superseded = _pendingSwitch;
            _pendingSwitch = request;
            current = _current;
            interrupt = _interrupt;
        }
        superseded?.Fail(new HeraldTransportSwitchException(superseded.Kind, $"The switch to {superseded.Kind} was superseded by a switch to {transport}."));
        // The loop takes the request at its next attempt; end whatever it is doing now so that this comes at once.
        current?.Stop($"switching to {transport}");
        Interrupt(interrupt);
        try
        {
            await request.Outcome.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            lock (_gate)
            {
                if (ReferenceEquals(_pendingSwitch, request))
                {
                    _pendingSwitch = null;
                }
            }
            throw;
        }
    }

    /// <summary>
    /// Test hook: breaks the current connection abruptly (WebSocket: the socket is aborted; polling: the poll in
    /// flight is cancelled). Returns the transport that was broken, or <see langword="null"/> when not connected.
    /// </summary>
    internal HeraldTransport? BreakConnection()
    {
        ClientTransport? current;
        lock (_gate)
        {
            current = _current;
        }
        if (current is null || current.Completion.IsCompleted)
        {
            return null;
        }
        current.Break();
        return current.Kind;
    }

    /// <summary>Waits for an open transport to send a command through.</summary>
    internal async Task<ClientTransport> WaitForTransportAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        while (true)
        {
            Task<ClientTransport> connected;
            lock (_gate)
            {
                if (_runTask is null)
                {
                    throw new InvalidOperationException("Call ConnectAsync() first.");
                }
                if (_runTask.IsCompleted)
                {
                    throw new HeraldConnectionException("The client stopped reconnecting; call ConnectAsync() again.");
                }
                connected = _connected.Task;
            }
            var transport = await connected.WaitAsync(cancellationToken);
            if (!transport.Completion.IsCompleted)
            {
                return transport;
            }
            // That connection already ended; the loop is replacing it.
            await Task.Yield();
        }
    }

    private async Task StopLoopAsync()
    {
        Task? run;
        ClientTransport? current;
        lock (_gate)
        {
            run = _runTask;
            current = _current;
            _runCts?.Cancel();
        }
        current?.Stop("client disposed");
        if (run is not null)
        {
            try
            {
                await run;
            }
            catch (Exception)
            {
                // The loop reports its own failures through StateChanged.
            }
        }
        lock (_gate)
        {
            _connected.TrySetException(new ObjectDisposedException(nameof(HeraldClient)));
            _pendingSwitch?.Fail(new HeraldTransportSwitchException(_pendingSwitch.Kind, "The client was disposed before the switch."));
            _pendingSwitch = null;
            _firstConnect?.TrySetException(new ObjectDisposedException(nameof(HeraldClient)));
            _runCts?.Dispose();
            _runCts = null;
        }
    }

    private static TaskCompletionSource<ClientTransport> NewConnectedSource() =>
        new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Cancels an attempt or backoff delay of the connection loop; it may have ended meanwhile.</summary>
    private static void Interrupt(CancellationTokenSource? interrupt)
    {
        try
        {
            interrupt?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // That attempt or delay is over already; the loop sees the pending switch at its next step.
        }
    }

    /// <summary>One <see cref="SwitchTransportAsync"/> call: pending until the loop takes it, then one attempt.</summary>
    private sealed class SwitchRequest(HeraldTransport kind)
    {
        private readonly TaskCompletionSource _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public HeraldTransport Kind { get; } = kind;

        public Task Outcome => _outcome.Task;

        public void Succeed() => _outcome.TrySetResult();

        public void Fail(Exception error) => _outcome.TrySetException(error);
    }
}
