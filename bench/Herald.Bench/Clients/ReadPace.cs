namespace Herald.Bench.Clients;

/// <summary>
/// How fast one subscriber reads its socket: at full speed, not at all, or at a set byte rate. A reader that stops
/// leaves what the server sends in the kernel's socket buffers and then in the server's queue for it, which is what a
/// stalled phone or an overloaded browser tab does to a server. The scenario switches the phase while the run goes on.
/// </summary>
internal sealed class ReadPace
{
    private readonly Lock _gate = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private double _bytesPerSecond = double.PositiveInfinity;
    // Seconds of reading at the slow rate not waited for yet: a read of a few bytes waits only once they add up.
    private double _owed;

    /// <summary>Reads as fast as the data comes (the default).</summary>
    public void Full() => Set(double.PositiveInfinity);

    /// <summary>Stops reading until the next phase.</summary>
    public void Stop() => Set(0);

    /// <summary>Reads at most <paramref name="bytesPerSecond"/> on average.</summary>
    public void Slow(double bytesPerSecond) => Set(bytesPerSecond);

    private void Set(double bytesPerSecond)
    {
        TaskCompletionSource previous;
        lock (_gate)
        {
            _bytesPerSecond = bytesPerSecond;
            previous = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        previous.TrySetResult();
    }

    /// <summary>Called by the receive loop after each read of <paramref name="bytes"/>; returns when it may read again.</summary>
    public async ValueTask AfterReadAsync(int bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            double rate;
            Task changed;
            lock (_gate)
            {
                rate = _bytesPerSecond;
                changed = _changed.Task;
            }
            if (double.IsPositiveInfinity(rate))
            {
                _owed = 0;
                return;
            }
            if (rate == 0)
            {
                await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }
            _owed += bytes / rate;
            if (_owed < 0.02)
            {
                return;
            }
            var wait = TimeSpan.FromSeconds(_owed);
            _owed = 0;
            // The pacing itself is the behaviour measured; a phase change ends the wait early.
            await Task.WhenAny(changed, Task.Delay(wait, cancellationToken)).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            return;
        }
    }
}
