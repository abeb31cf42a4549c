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
    /// <exception cref="HeraldException">The server refused the credentials (<c>unauthorized</c>).</exception>
    public async ValueTask ConnectAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        Task first;
        lock (_gate)
        {
            if (_runTask is null || _runTask.IsCompleted)
            {
                _firstConnect = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _runCts = new CancellationTokenSource();
                var token = _runCts.Token;
                _runTask = Task.Run(() => RunAsync(token), CancellationToken.None);
            }
            first = _firstConnect!.Task;
        }
        await first.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Drops the current connection and reconnects over <paramref name="transport"/>, recovering every subscription
    /// from its cursor. Returns once connected over that transport.
    /// </summary>
    /// <exception cref="InvalidOperationException">The client is not running, or <see cref="HeraldClientOptions.ForcedTransport"/> names another transport.</exception>
    public async ValueTask SwitchTransportAsync(HeraldTransport transport, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        if (Options.ForcedTransport is { } forced && forced != transport)
        {
            throw new InvalidOperationException($"The client is forced to use {forced}.");
        }
        ClientTransport? current;
        lock (_gate)
        {
            if (_runTask is null || _runTask.IsCompleted)
            {
                throw new InvalidOperationException("Call ConnectAsync() before SwitchTransportAsync().");
            }
            _preferred = transport;
            _switchRequested = true;
            current = _current;
        }
        current?.Stop($"switching to {transport}");
        while (true)
        {
            var connected = await WaitForTransportAsync(cancellationToken);
            if (connected.Kind == transport)
            {
                return;
            }
            await connected.Completion.WaitAsync(cancellationToken);
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
            _firstConnect?.TrySetException(new ObjectDisposedException(nameof(HeraldClient)));
            _runCts?.Dispose();
            _runCts = null;
        }
    }

    private static TaskCompletionSource<ClientTransport> NewConnectedSource() =>
        new(TaskCreationOptions.RunContinuationsAsynchronously);
}
