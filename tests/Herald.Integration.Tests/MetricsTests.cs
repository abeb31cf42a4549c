using System.Text.Json;
using System.Text.RegularExpressions;
using Herald.Diagnostics;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class MetricsTests
{
    [Fact]
    public async Task Metrics_ArePrometheusText_AndCountWhatHappened()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"chat:m"}""");
        await server.PublishAsync("chat:m", "1");
        await client.NextPushAsync();
        // The push can reach the client before the fan-out worker counts the delivery (after its loop over subscribers).
        await Wait.UntilAsync(() => server.Node.Metrics.Deliveries == 1, TimeSpan.FromSeconds(10), "the delivery is counted");
        await client.CommandAsync("""{"op":"fly"}""");
        using var first = JsonDocument.Parse(await server.Http.GetStringAsync("/poll?channel=chat:m"));

        using var response = await server.Http.GetAsync("/metrics");
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.ToString());
        var text = await response.Content.ReadAsStringAsync();
        long Sample(string series) => long.Parse(Regex.Match(text, "^" + Regex.Escape(series) + " (\\d+)$", RegexOptions.Multiline).Groups[1].Value);

        Assert.Equal(1, Sample("herald_connections{transport=\"websocket\"}"));
        Assert.Equal(1, Sample("herald_publications_total"));
        Assert.Equal(1, Sample("herald_deliveries_total"));
        Assert.Equal(1, Sample("herald_channels"));
        Assert.Equal(0, Sample("herald_dispatch_backlog"));
        Assert.Equal(0, Sample("herald_dispatch_overflows_total"));
        Assert.Equal(0, Sample("herald_publish_fanout_waits_total"));
        Assert.Equal(1, Sample("herald_command_errors_total"));
        Assert.Equal(1, Sample("herald_poll_requests_total{result=\"data\"}"));
        Assert.Contains("# TYPE herald_publications_total counter", text);
        // Every line is a comment or "name{labels} value".
        Assert.All(text.Split('\n', StringSplitOptions.RemoveEmptyEntries), line =>
            Assert.Matches("^(# (HELP|TYPE) .+|[a-z_]+(\\{[a-z_]+=\"[^\"]+\"(,[a-z_]+=\"[^\"]+\")*\\})? [0-9.eE+-]+)$", line));
    }

    [Fact]
    public async Task DeliveryLatency_CountsEachDeliveryOnce_PerTransport_AsACumulativeHistogram()
    {
        const int publications = 25;
        const int subscribers = 3;
        const string channel = "chat:latency";
        await using var server = await TestServer.StartAsync();
        var clients = new List<WsClient>();
        try
        {
            for (var i = 0; i < subscribers; i++)
            {
                var client = await server.ConnectAsync();
                clients.Add(client);
                await client.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""");
            }
            using var first = JsonDocument.Parse(await server.Http.GetStringAsync($"/poll?channel={channel}"));
            var epoch = first.RootElement.GetProperty("channels").GetProperty(channel).GetProperty("epoch").GetString()!;
            var before = Parse(await server.Http.GetStringAsync("/metrics"));

            // A long-poll client following the channel from offset 0, parked before the first publication.
            var longPoll = FollowAsync(server, channel, epoch, publications);
            await Wait.UntilAsync(() => server.Node.ParkedPolls == 1, TimeSpan.FromSeconds(10), "the long poll parks");
            for (var i = 1; i <= publications; i++)
            {
                await server.PublishAsync(channel, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            foreach (var client in clients)
            {
                for (var i = 0; i < publications; i++)
                {
                    await client.NextPushAsync();
                }
            }
            Assert.Equal(publications, await Wait.ForAsync(longPoll, TimeSpan.FromSeconds(20), "the long poll receives every publication"));
            // A short poll from offset 0 gets them all again in one answer: that is another delivery of each.
            using var all = JsonDocument.Parse(await server.Http.GetStringAsync($"/poll?channel={channel}&offset=0&epoch={epoch}"));
            Assert.Equal(publications, all.RootElement.GetProperty("channels").GetProperty(channel).GetProperty("publications").GetArrayLength());

            // The client can read the bytes before the server's writer records them, so wait for the records to land.
            var expected = new Dictionary<string, long> { ["websocket"] = publications * subscribers, ["long_poll"] = publications, ["short_poll"] = publications };
            var metrics = server.Node.Metrics;
            await Wait.UntilAsync(
                () => metrics.DeliveryLatency(DeliveryTransport.WebSocket).Snapshot().Count >= before["websocket"].Count + expected["websocket"]
                    && metrics.DeliveryLatency(DeliveryTransport.LongPoll).Snapshot().Count >= before["long_poll"].Count + expected["long_poll"]
                    && metrics.DeliveryLatency(DeliveryTransport.ShortPoll).Snapshot().Count >= before["short_poll"].Count + expected["short_poll"],
                TimeSpan.FromSeconds(10), "every delivery is recorded");

            var after = Parse(await server.Http.GetStringAsync("/metrics"));
            foreach (var (transport, deliveries) in expected)
            {
                var histogram = after[transport];
                Assert.Equal(before[transport].Count + deliveries, histogram.Count);
                Assert.Equal(LatencyHistogram.BucketBounds.Count + 1, histogram.Buckets.Count);
                Assert.Equal("+Inf", histogram.Buckets[^1].Le);
                Assert.Equal(LatencyHistogram.BucketBounds.Select(b => b.ToString(System.Globalization.CultureInfo.InvariantCulture)), histogram.Buckets.SkipLast(1).Select(b => b.Le));
                for (var i = 1; i < histogram.Buckets.Count; i++)
                {
                    Assert.True(histogram.Buckets[i].Value >= histogram.Buckets[i - 1].Value, $"{transport}: buckets must be cumulative ({string.Join(", ", histogram.Buckets)})");
                }
                Assert.Equal(histogram.Count, histogram.Buckets[^1].Value);
                Assert.True(histogram.Sum > before[transport].Sum, $"{transport}: the sum grows ({histogram.Sum})");
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    /// <summary>Long-polls <paramref name="channel"/> from offset 0 until <paramref name="count"/> publications arrived; returns how many did.</summary>
    private static async Task<int> FollowAsync(TestServer server, string channel, string epoch, int count)
    {
        var offset = 0UL;
        var received = 0;
        while (received < count)
        {
            using var answer = JsonDocument.Parse(await server.Http.GetStringAsync($"/poll?channel={channel}&offset={offset}&epoch={epoch}&wait=10"));
            var part = answer.RootElement.GetProperty("channels").GetProperty(channel);
            received += part.GetProperty("publications").GetArrayLength();
            offset = part.GetProperty("offset").GetUInt64();
        }
        return received;
    }

    private sealed record Histogram(IReadOnlyList<(string Le, long Value)> Buckets, double Sum, long Count);

    /// <summary>The <c>herald_delivery_latency_seconds</c> histograms of a scrape, by transport, buckets in the order served.</summary>
    private static Dictionary<string, Histogram> Parse(string text)
    {
        var result = new Dictionary<string, Histogram>();
        foreach (var transport in new[] { "websocket", "long_poll", "short_poll" })
        {
            var prefix = "herald_delivery_latency_seconds";
            var label = $"transport=\"{transport}\"";
            var buckets = Regex.Matches(text, "^" + Regex.Escape(prefix + "_bucket{" + label + ",le=\"") + "([^\"]+)\"\\} (\\d+)$", RegexOptions.Multiline)
                .Select(m => (m.Groups[1].Value, long.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))
                .ToList();
            string Single(string suffix) => Regex.Match(text, "^" + Regex.Escape(prefix + suffix + "{" + label + "}") + " (\\S+)$", RegexOptions.Multiline).Groups[1].Value;
            result[transport] = new Histogram(buckets,
                double.Parse(Single("_sum"), System.Globalization.CultureInfo.InvariantCulture),
                long.Parse(Single("_count"), System.Globalization.CultureInfo.InvariantCulture));
        }
        return result;
    }
}
