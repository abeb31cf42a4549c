using System.Diagnostics;
using HdrHistogram;

namespace Herald.Bench.Measurement;

/// <summary>
/// What the clients of one run count: deliveries (at the client, one per payload received), their latency from the
/// publisher's stamp, HTTP requests, and bytes on the wire (both directions, TCP payload, counted on the generator's
/// sockets). Thread-safe; read with <see cref="TakeInterval"/>.
/// </summary>
internal sealed class Stats
{
    // Latency in microseconds, 1 µs .. 10 min, 3 significant digits. Many client loops record at once, so the
    // recorder's histograms must be the concurrent kind: plain ones lose counts and then fail percentile reads.
    private readonly Recorder _latency = NewRecorder();
    // A second view of the same latencies, cut at other moments (a scenario's phases); only when asked for.
    private Recorder? _phases;
    private long _deliveries;
    private long _requests;
    private long _bytesIn;
    private long _bytesOut;
    private long _errors;

    public long Deliveries => Interlocked.Read(ref _deliveries);

    public long Requests => Interlocked.Read(ref _requests);

    public long Errors => Interlocked.Read(ref _errors);

    public long BytesOnWire => Interlocked.Read(ref _bytesIn) + Interlocked.Read(ref _bytesOut);

    public void RecordDelivery(long stopwatchTicks)
    {
        Interlocked.Increment(ref _deliveries);
        var micros = Math.Min(Math.Max(1, stopwatchTicks * 1_000_000 / Stopwatch.Frequency), 600_000_000);
        _latency.RecordValue(micros);
        _phases?.RecordValue(micros);
    }

    /// <summary>Starts recording latency for <see cref="TakePhase"/> too, apart from <see cref="TakeInterval"/>'s.</summary>
    public void TrackPhases() => _phases ??= NewRecorder();

    /// <summary>The latency histogram since the previous call or <see cref="TrackPhases"/> (and resets it).</summary>
    public HistogramBase TakePhase() => (_phases ?? throw new InvalidOperationException("call TrackPhases first")).GetIntervalHistogram();

    private static Recorder NewRecorder() => new(1, 600_000_000, 3, (id, low, high, digits) => new LongConcurrentHistogram(id, low, high, digits));

    public void CountRequest() => Interlocked.Increment(ref _requests);

    public void CountError() => Interlocked.Increment(ref _errors);

    public void CountIn(int bytes) => Interlocked.Add(ref _bytesIn, bytes);

    public void CountOut(int bytes) => Interlocked.Add(ref _bytesOut, bytes);

    /// <summary>The latency histogram since the previous call (and resets it).</summary>
    public HistogramBase TakeInterval() => _latency.GetIntervalHistogram();
}
