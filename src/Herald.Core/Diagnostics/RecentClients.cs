using System.Diagnostics;
using System.Numerics;

namespace Herald.Diagnostics;

/// <summary>
/// Estimates how many distinct clients did something recently (here: polled), in fixed memory, without a lock or an
/// allocation per observation: linear counting (Whang, Vander-Zanden and Taylor, 1990) over a bitmap of 2^16 bits per
/// window of <see cref="Window"/>. A client sets one bit chosen by a hash of its identity; the estimate reads the union of
/// the current and the previous window, so a client counts for 10 to 20 s after its last poll.
/// </summary>
/// <remarks>
/// Polls hold no per-client state on the server (any node answers any poll), so an exact count would need a table of
/// client ids that grows with them. The bitmap does not: 16 KiB in all, exact in practice for a few clients (two clients
/// share a bit with odds 1 in 65,536), within a few percent up to hundreds of thousands, and saturating near 726,000.
/// A rotation that races an observation can lose that one bit for one window; the next poll sets it again.
/// </remarks>
internal sealed class RecentClients
{
    /// <summary>The length of one window.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    private const int Bits = 1 << 16;
    private const int Words = Bits / 64;
    private static readonly long s_windowTicks = (long)(Window.TotalSeconds * Stopwatch.Frequency);

    private long[] _current = new long[Words];
    private long[] _previous = new long[Words];
    private long _windowStart = Stopwatch.GetTimestamp();
    private readonly Lock _rotation = new();

    /// <summary>Notes a client by a hash of its identity, at <paramref name="now"/> (a <see cref="Stopwatch.GetTimestamp"/> value).</summary>
    public void Seen(int hash, long now)
    {
        Rotate(now);
        // Mixed again: string hashes are good, but IPAddress's is a plain fold of its bytes.
        var bit = (uint)HashCode.Combine(hash) & (Bits - 1);
        var words = Volatile.Read(ref _current);
        var mask = 1L << (int)(bit & 63);
        if ((Volatile.Read(ref words[bit >> 6]) & mask) == 0)
        {
            Interlocked.Or(ref words[bit >> 6], mask);
        }
    }

    /// <summary>The estimated number of distinct clients seen in the last one to two windows before <paramref name="now"/>.</summary>
    public long Estimate(long now)
    {
        Rotate(now);
        var current = Volatile.Read(ref _current);
        var previous = Volatile.Read(ref _previous);
        var set = 0;
        for (var i = 0; i < Words; i++)
        {
            set += BitOperations.PopCount((ulong)(Volatile.Read(ref current[i]) | Volatile.Read(ref previous[i])));
        }
        var zeros = Bits - set;
        // All bits set: report the saturation point rather than infinity.
        return (long)Math.Round(zeros == 0 ? Bits * Math.Log(Bits) : -Bits * Math.Log((double)zeros / Bits));
    }

    private void Rotate(long now)
    {
        if (now - Volatile.Read(ref _windowStart) < s_windowTicks)
        {
            return;
        }
        lock (_rotation)
        {
            var elapsed = now - _windowStart;
            if (elapsed < s_windowTicks)
            {
                return;
            }
            // The previous window's array becomes the new current one, emptied; past two windows both are stale.
            var reused = _previous;
            Array.Clear(reused);
            if (elapsed >= 2 * s_windowTicks)
            {
                Array.Clear(_current);
            }
            Volatile.Write(ref _previous, _current);
            Volatile.Write(ref _current, reused);
            Volatile.Write(ref _windowStart, now);
        }
    }
}
