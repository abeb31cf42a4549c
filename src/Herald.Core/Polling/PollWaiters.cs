namespace Herald.Polling;

/// <summary>
/// Long polls parked on channels. A parked poll holds no thread: it is a task that the next publication of any
/// of its channels completes. Nothing here is per client; a poll that ends simply drops its registration.
/// </summary>
public sealed class PollWaiters
{
    private readonly Dictionary<string, HashSet<TaskCompletionSource>> _byChannel = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private int _parked;

    /// <summary>Polls parked right now.</summary>
    public int Parked => Volatile.Read(ref _parked);

    /// <summary>
    /// Parks on <paramref name="channels"/>; the returned registration's <see cref="Registration.Woken"/> completes at the
    /// next publication to any of them. Register before reading positions, so a publication in between is not missed.
    /// </summary>
    public Registration Park(IReadOnlyCollection<string> channels)
    {
        ArgumentNullException.ThrowIfNull(channels);
        var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            foreach (var channel in channels)
            {
                if (!_byChannel.TryGetValue(channel, out var set))
                {
                    _byChannel[channel] = set = [];
                }
                set.Add(signal);
            }
        }
        Interlocked.Increment(ref _parked);
        return new Registration(this, channels, signal);
    }

    /// <summary>Wakes every poll parked on <paramref name="channel"/>.</summary>
    public void Wake(string channel)
    {
        HashSet<TaskCompletionSource>? woken;
        lock (_gate)
        {
            if (!_byChannel.Remove(channel, out woken))
            {
                return;
            }
        }
        foreach (var signal in woken)
        {
            signal.TrySetResult();
        }
    }

    /// <summary>Wakes every parked poll (at shutdown).</summary>
    public void WakeAll()
    {
        List<HashSet<TaskCompletionSource>> all;
        lock (_gate)
        {
            all = [.. _byChannel.Values];
            _byChannel.Clear();
        }
        foreach (var set in all)
        {
            foreach (var signal in set)
            {
                signal.TrySetResult();
            }
        }
    }

    private void Unpark(IReadOnlyCollection<string> channels, TaskCompletionSource signal)
    {
        lock (_gate)
        {
            foreach (var channel in channels)
            {
                if (_byChannel.TryGetValue(channel, out var set) && set.Remove(signal) && set.Count == 0)
                {
                    _byChannel.Remove(channel);
                }
            }
        }
        Interlocked.Decrement(ref _parked);
    }

    /// <summary>A parked poll; dispose it when the poll ends, however it ends.</summary>
    public sealed class Registration : IDisposable
    {
        private readonly PollWaiters _owner;
        private readonly IReadOnlyCollection<string> _channels;
        private readonly TaskCompletionSource _signal;
        private int _disposed;

        internal Registration(PollWaiters owner, IReadOnlyCollection<string> channels, TaskCompletionSource signal)
        {
            _owner = owner;
            _channels = channels;
            _signal = signal;
        }

        /// <summary>Completes when a publication arrives in one of the channels.</summary>
        public Task Woken => _signal.Task;

        /// <inheritdoc/>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                _owner.Unpark(_channels, _signal);
            }
        }
    }
}
