namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// A one-shot signal whose task is made only when someone waits before it is set. A connection keeps a few such signals
/// for its whole life (its writer has finished, its close code is decided) but waits on them only while it closes, so
/// an idle connection carries two ints instead of a <see cref="TaskCompletionSource"/> and its task each.
/// </summary>
/// <remarks>A mutable struct: keep it in a field and call it there, never through a copy.</remarks>
internal struct LazySignal
{
    private int _set;
    private TaskCompletionSource? _waiter;

    /// <summary>Sets the signal; waiters continue asynchronously.</summary>
    public void Set()
    {
        Volatile.Write(ref _set, 1);
        Volatile.Read(ref _waiter)?.TrySetResult();
    }

    /// <summary>Completes once the signal is set.</summary>
    public Task WaitAsync()
    {
        if (Volatile.Read(ref _set) != 0)
        {
            return Task.CompletedTask;
        }
        var fresh = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var waiter = Interlocked.CompareExchange(ref _waiter, fresh, null) ?? fresh;
        // Set may have run between the first check and the waiter being in place.
        if (Volatile.Read(ref _set) != 0)
        {
            waiter.TrySetResult();
        }
        return waiter.Task;
    }
}
