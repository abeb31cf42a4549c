using System.Diagnostics.Metrics;
using Herald.Diagnostics;

namespace Herald.Core.Tests;

public sealed class LatencyHistogramTests
{
    private static long Stopwatch(double seconds) => (long)Math.Round(seconds * System.Diagnostics.Stopwatch.Frequency);

    [Fact]
    public void Observations_LandInTheFirstBucketTheyDoNotExceed_AndReadCumulatively()
    {
        var histogram = new LatencyHistogram();
        var start = 1_000_000L;
        histogram.Record(start, start + Stopwatch(0.0001)); // exactly on the first bound: le is inclusive
        histogram.Record(start, start + Stopwatch(0.003)); // in (0.0025, 0.005]
        histogram.Record(start, start + Stopwatch(60)); // above every bound
        histogram.Record(start, start - 5); // a stamp "from the future" counts as zero

        var snapshot = histogram.Snapshot();
        var bounds = LatencyHistogram.BucketBounds;
        Assert.Equal(bounds.Count + 1, snapshot.CumulativeBuckets.Count);
        Assert.Equal(2, snapshot.CumulativeBuckets[0]);
        Assert.Equal(2, snapshot.CumulativeBuckets[bounds.ToList().IndexOf(0.0025)]);
        Assert.Equal(3, snapshot.CumulativeBuckets[bounds.ToList().IndexOf(0.005)]);
        Assert.Equal(3, snapshot.CumulativeBuckets[bounds.Count - 1]);
        Assert.Equal(4, snapshot.Count);
        Assert.Equal(60.0031, snapshot.SumSeconds, precision: 6);
    }

    [Fact]
    public void Recording_DoesNotAllocate()
    {
        using var metrics = new HeraldMetrics();
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        metrics.DeliveryWritten(DeliveryTransport.WebSocket, now - 1000, now); // warm up
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            metrics.DeliveryWritten(DeliveryTransport.WebSocket, now - i * 1000L, now);
        }
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void TheMeterHistogram_SeesEachDeliveryOnce_WithItsTransport()
    {
        using var metrics = new HeraldMetrics();
        var seen = new List<(double Seconds, string? Transport)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // Other HeraldMetrics instances (parallel tests) publish on a meter of the same name; listen to ours only.
            if (instrument.Name == "herald.delivery_latency" && ReferenceEquals(instrument.Meter, metrics.Meter))
            {
                Assert.Equal("s", instrument.Unit);
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            Assert.Equal(1, tags.Length);
            seen.Add((value, tags[0].Value as string));
        });
        listener.Start();

        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        metrics.DeliveryWritten(DeliveryTransport.WebSocket, now - Stopwatch(0.002), now);
        metrics.DeliveryWritten(DeliveryTransport.LongPoll, now - Stopwatch(0.5), now);

        Assert.Equal(2, seen.Count);
        Assert.Equal("websocket", seen[0].Transport);
        Assert.Equal(0.002, seen[0].Seconds, precision: 6);
        Assert.Equal("long_poll", seen[1].Transport);
        Assert.Equal(1, metrics.DeliveryLatency(DeliveryTransport.WebSocket).Snapshot().Count);
        Assert.Equal(1, metrics.DeliveryLatency(DeliveryTransport.LongPoll).Snapshot().Count);
        Assert.Equal(0, metrics.DeliveryLatency(DeliveryTransport.ShortPoll).Snapshot().Count);
    }
}
