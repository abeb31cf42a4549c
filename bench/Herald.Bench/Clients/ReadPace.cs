namespace Herald.Bench.Clients;

/// <summary>
/// Whether one subscriber reads its socket: a reader that stops leaves what the server sends in the kernel's socket
/// buffers and then in the server's queue for it, which is what a stalled phone or a frozen browser tab does to a
/// server. The scenario stops and resumes it while the run goes on.
/// </summary>
internal sealed class ReadPace
{
    private readonly Lock _gate = new();
    private TaskCompletionSource? _resumed;

    /// <summary>Stops reading until <see cref="Resume"/>.</summary>
    public void Stop()
    {
        lock (_gate)
        {
            _resumed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    /// <summary>Reads as fast as the data comes again (the default).</summary>
    public void Resume()
    {
        TaskCompletionSource? resumed;
        lock (_gate)
        {
            resumed = _resumed;
            _resumed = null;
        }
        resumed?.TrySetResult();
    }

    /// <summary>Called by the receive loop after each read; returns when it may read again.</summary>
    public ValueTask AfterReadAsync(CancellationToken cancellationToken)
    {
        Task? resumed;
        lock (_gate)
        {
            resumed = _resumed?.Task;
        }
        return resumed is null ? ValueTask.CompletedTask : new ValueTask(resumed.WaitAsync(cancellationToken));
    }
}
