namespace Herald.Bench.Clients;

/// <summary>One subscriber: connects, subscribes to one channel, and counts what it receives until disposed.</summary>
internal abstract class BenchClient(ClientContext context, string channel) : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private Task _run = Task.CompletedTask;
    private long _received;

    protected ClientContext Context { get; } = context;

    public string Channel { get; } = channel;

    protected CancellationToken Stopping => _stop.Token;

    /// <summary>Payloads this client received.</summary>
    public long Received => Interlocked.Read(ref _received);

    /// <summary>Whether the client lost its connection or subscription and stopped.</summary>
    public bool Failed { get; private set; }

    /// <summary>Connects and subscribes; completes once the subscription request is on its way.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        await OpenAsync(linked.Token).ConfigureAwait(false);
        _run = Task.Run(async () =>
        {
            try
            {
                await RunAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
            }
            catch (Exception)
            {
                Failed = true;
                Context.Stats.CountError();
            }
        }, CancellationToken.None);
    }

    protected abstract Task OpenAsync(CancellationToken cancellationToken);

    protected abstract Task RunAsync(CancellationToken cancellationToken);

    /// <summary>Counts the payloads in what was received and records their latency.</summary>
    protected void OnData(ReadOnlySpan<byte> data)
    {
        var n = Measurement.Payload.Scan(data, Context.Stats);
        if (n > 0)
        {
            Interlocked.Add(ref _received, n);
        }
    }

    public virtual async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _run.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Stopping: whatever the loop threw on cancellation is not a result.
        }
        _stop.Dispose();
    }
}
