namespace Herald.AspNetCore;

/// <summary>A connection kept alive by the node's <see cref="KeepAliveWheel"/>: a WebSocket (pings) or an SSE stream (comments).</summary>
internal interface IKeepAliveMember
{
    /// <summary>The wheel slot holding the connection, or -1 when it is on none. Written under the wheel's lock only.</summary>
    int KeepAliveSlot { get; set; }

    /// <summary>The connection's index in its slot's list. Written under the wheel's lock only.</summary>
    int KeepAliveIndex { get; set; }

    /// <summary>The timeout pass, <c>KeepAliveTimeout</c> after the connection's slot was due: drop it if it has not answered.</summary>
    void CheckKeepAlive(KeepAliveWheel wheel);

    /// <summary>The connection's slot is due, once per <c>KeepAliveInterval</c>: ping it (or send a heartbeat).</summary>
    void KeepAliveDue(KeepAliveWheel wheel);
}

/// <summary>
/// Keeps every WebSocket and SSE stream of a node alive from one timer: a timing wheel of <see cref="Slots"/> slots,
/// one turned per tick, so each connection is due once every <c>Herald:KeepAliveInterval</c>. A WebSocket gets a
/// ping and is dropped if it has sent nothing <c>Herald:KeepAliveTimeout</c> after it; an SSE stream that wrote
/// nothing since its last turn gets a comment line.
/// </summary>
/// <remarks>
/// The platform WebSocket's own keep-alive gives every connection a timer of its own, as SSE's heartbeat did. Those
/// fire at scattered moments, and each one wakes a thread-pool thread that sends one ping, waits for nothing, and spins
/// before it sleeps: with 1,000 idle WebSockets that was about 24 ms of CPU a second (3× the rest of the idle server),
/// more than a whole delivery step at low load. Here one tick serves a slot's connections together, so their pongs
/// arrive together too, and a connection holds four integers instead of a timer. Any frame read from a WebSocket peer
/// answers a ping (a pong, or a message), counted by <see cref="WebSockets.FrameGuardStream.ReadCount"/>: no clock is
/// read per connection.
/// </remarks>
internal sealed class KeepAliveWheel : IDisposable
{
    private readonly List<IKeepAliveMember>[] _slots;
    private readonly Lock _gate = new();
    private readonly List<IKeepAliveMember> _due = [];
    private readonly List<IKeepAliveMember> _expiring = [];
    private readonly TimeSpan _tick;
    private readonly TimeProvider _time;
    private ITimer? _timer;
    private int _cursor;
    private int _ticking;
    private bool _disposed;

    private KeepAliveWheel(TimeSpan interval, TimeSpan timeout, TimeProvider time)
    {
        _time = time;
        // A tick short enough that the timeout is kept to within an eighth of itself, and no longer than a second.
        var shortest = timeout > TimeSpan.Zero && timeout < interval ? timeout : interval;
        _tick = TimeSpan.FromTicks(Math.Clamp(shortest.Ticks / 8, TimeSpan.FromMilliseconds(10).Ticks, TimeSpan.FromSeconds(1).Ticks));
        _slots = new List<IKeepAliveMember>[Math.Max(1, (int)Math.Round(interval / _tick))];
        for (var i = 0; i < _slots.Length; i++)
        {
            _slots[i] = [];
        }
        // A timeout of zero means "no timeout" (pings only keep proxies' idle timers from firing).
        TimeoutTicks = timeout > TimeSpan.Zero ? Math.Max(1, (long)Math.Ceiling(timeout / _tick)) : NoTimeout;
    }

    /// <summary>The wheel's size: <c>KeepAliveInterval</c> in ticks.</summary>
    internal int Slots => _slots.Length;

    /// <summary>The <see cref="TimeoutTicks"/> of a zero <c>KeepAliveTimeout</c>: pings go out, nobody is dropped.</summary>
    internal const long NoTimeout = long.MaxValue;

    /// <summary>How many ticks a ping may go unanswered.</summary>
    internal long TimeoutTicks { get; }

    /// <summary>Ticks turned since the start; a ping's age is counted in them.</summary>
    internal long Now { get; private set; }

    /// <summary>The keep-alive for these options, or <see langword="null"/> when <c>KeepAliveInterval</c> is zero (off).</summary>
    public static KeepAliveWheel? Create(HeraldOptions options, TimeProvider time) =>
        options.KeepAliveInterval > TimeSpan.Zero ? new KeepAliveWheel(options.KeepAliveInterval, options.KeepAliveTimeout, time) : null;

    /// <summary>Starts keeping <paramref name="connection"/> alive: it is first due about one interval from now.</summary>
    public void Add(IKeepAliveMember connection)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            // The slot just turned comes round again last.
            var slot = (_cursor + _slots.Length - 1) % _slots.Length;
            connection.KeepAliveSlot = slot;
            connection.KeepAliveIndex = _slots[slot].Count;
            _slots[slot].Add(connection);
            _timer ??= _time.CreateTimer(static state => ((KeepAliveWheel)state!).Tick(), this, _tick, _tick);
        }
    }

    /// <summary>Stops keeping <paramref name="connection"/> alive (it has ended).</summary>
    public void Remove(IKeepAliveMember connection)
    {
        lock (_gate)
        {
            if (connection.KeepAliveSlot < 0)
            {
                return;
            }
            // Swap-remove: the last connection of the slot takes the leaving one's place.
            var list = _slots[connection.KeepAliveSlot];
            var last = list[^1];
            list[connection.KeepAliveIndex] = last;
            last.KeepAliveIndex = connection.KeepAliveIndex;
            list.RemoveAt(list.Count - 1);
            connection.KeepAliveSlot = -1;
        }
    }

    /// <summary>
    /// Turns the wheel once: drops the connections of the slot due <see cref="TimeoutTicks"/> ago that have not
    /// answered, then serves the current slot's. Overlapping ticks (a slow one) skip rather than run together.
    /// </summary>
    internal void Tick()
    {
        if (Interlocked.Exchange(ref _ticking, 1) != 0)
        {
            return;
        }
        try
        {
            lock (_gate)
            {
                Now++;
                if (TimeoutTicks < _slots.Length)
                {
                    _expiring.AddRange(_slots[(int)((_cursor - TimeoutTicks + _slots.Length) % _slots.Length)]);
                }
                _due.AddRange(_slots[_cursor]);
                _cursor = (_cursor + 1) % _slots.Length;
            }
            foreach (var connection in _expiring)
            {
                connection.CheckKeepAlive(this);
            }
            foreach (var connection in _due)
            {
                connection.KeepAliveDue(this);
            }
        }
        finally
        {
            _expiring.Clear();
            _due.Clear();
            Volatile.Write(ref _ticking, 0);
        }
    }

    /// <summary>Stops the timer (the node is stopping; its connections are being closed).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _timer?.Dispose();
        }
    }
}
