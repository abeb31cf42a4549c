using System.Diagnostics;

namespace Herald.Diagnostics;

/// <summary>The transport that carried a delivery, as named in the <c>transport</c> label of Herald's metrics.</summary>
internal enum DeliveryTransport
{
    /// <summary>A push in a WebSocket frame (<c>websocket</c>).</summary>
    WebSocket,

    /// <summary>A publication in the answer to a poll that asked to wait (<c>long_poll</c>).</summary>
    LongPoll,

    /// <summary>A publication in the answer to a poll that did not ask to wait (<c>short_poll</c>).</summary>
    ShortPoll,

    /// <summary>An event on a Server-Sent Events stream (<c>sse</c>).</summary>
    Sse,
}

/// <summary>
/// A fixed-bucket histogram of durations, cheap enough to record once per delivery: a handful of comparisons and two
/// interlocked adds, no allocation and no lock.
/// </summary>
/// <remarks>
/// Counts are kept per bucket (not cumulative) and the sum in 100 ns ticks, so that every field is a <see langword="long"/>
/// updated with <see cref="Interlocked"/>. A reader adds the buckets up, which makes the <c>+Inf</c> bucket equal to the
/// count by construction even while recording goes on; only the sum may be a few observations ahead or behind.
/// </remarks>
internal sealed class LatencyHistogram
{
    // Upper bounds in seconds: 100 µs (a loopback push) to 10 s (a short poll's interval, a stalled consumer).
    private static readonly double[] s_bounds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    // The same bounds in 100 ns ticks, all whole numbers, so that recording compares integers.
    private static readonly long[] s_boundTicks = Array.ConvertAll(s_bounds, b => (long)Math.Round(b * TimeSpan.TicksPerSecond));

    // Stopwatch ticks to 100 ns ticks; the same conversion as Stopwatch.GetElapsedTime.
    private static readonly double s_ticksPerStopwatchTick = (double)TimeSpan.TicksPerSecond / Stopwatch.Frequency;

    private readonly long[] _buckets = new long[s_bounds.Length + 1]; // the last one is "above every bound"
    private long _sumTicks;

    /// <summary>The upper bounds of the buckets, in seconds, ascending; a last <c>+Inf</c> bucket is implied.</summary>
    public static IReadOnlyList<double> BucketBounds => s_bounds;

    /// <summary>Records the time between two <see cref="Stopwatch.GetTimestamp"/> values; returns it in seconds.</summary>
    /// <remarks>A negative span (a stamp taken on another core just after <paramref name="end"/>) counts as zero.</remarks>
    public double Record(long start, long end)
    {
        var ticks = end > start ? (long)((end - start) * s_ticksPerStopwatchTick) : 0;
        var bounds = s_boundTicks;
        var i = 0;
        // Linear rather than binary search: most deliveries land in the first few buckets, and 16 longs are two cache lines.
        while (i < bounds.Length && ticks > bounds[i])
        {
            i++;
        }
        Interlocked.Increment(ref _buckets[i]);
        Interlocked.Add(ref _sumTicks, ticks);
        return ticks / (double)TimeSpan.TicksPerSecond;
    }

    /// <summary>Reads the histogram: cumulative bucket counts (one per bound, then <c>+Inf</c>), the sum and the count.</summary>
    public LatencySnapshot Snapshot()
    {
        var cumulative = new long[_buckets.Length];
        long total = 0;
        for (var i = 0; i < _buckets.Length; i++)
        {
            total += Volatile.Read(ref _buckets[i]);
            cumulative[i] = total;
        }
        return new LatencySnapshot(cumulative, Volatile.Read(ref _sumTicks) / (double)TimeSpan.TicksPerSecond);
    }
}

/// <summary>A reading of a <see cref="LatencyHistogram"/>.</summary>
/// <param name="CumulativeBuckets">
/// Observations at or below each of <see cref="LatencyHistogram.BucketBounds"/>, then all of them (<c>+Inf</c>).
/// </param>
/// <param name="SumSeconds">The sum of all observations, in seconds.</param>
internal sealed record LatencySnapshot(IReadOnlyList<long> CumulativeBuckets, double SumSeconds)
{
    /// <summary>How many observations were recorded (the <c>+Inf</c> bucket).</summary>
    public long Count => CumulativeBuckets[^1];
}
