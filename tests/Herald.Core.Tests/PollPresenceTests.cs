using Herald.Tests.Infrastructure;
using System.Text.Json;
using Herald.Brokers;

namespace Herald.Core.Tests;

public sealed class PollPresenceTests
{
    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static (HeraldNode Node, ManualClock Clock) NewNode(Action<HeraldOptions>? configure = null)
    {
        var options = new HeraldOptions { PollPresenceTimeout = TimeSpan.FromSeconds(15) };
        configure?.Invoke(options);
        var clock = new ManualClock();
        return (new HeraldNode(options, new MemoryBroker(clock), timeProvider: clock), clock);
    }

    private static JsonElement Json(string text)
    {
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }

    [Fact]
    public async Task RefreshingAnUnchangedLease_AllocatesNothing()
    {
        var (node, _) = NewNode();
        await using var _ = node;
        var info = Json("""{"name":"Ana"}""");
        Assert.True(node.TouchPollPresence("chat:a", "c1", "ana", info, TimeSpan.FromSeconds(25)));
        node.TouchPollPresence("chat:a", "c1", "ana", info, TimeSpan.FromSeconds(25)); // warm up

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            node.TouchPollPresence("chat:a", "c1", "ana", info, TimeSpan.FromSeconds(25));
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public async Task Lease_LastsWaitPlusTimeout_ThenIsNeitherListedNorKept()
    {
        var (node, clock) = NewNode();
        await using var _ = node;
        node.TouchPollPresence("chat:a", "c1", "", null, TimeSpan.FromSeconds(25)); // until t = 40 s
        clock.Now += TimeSpan.FromSeconds(1);
        // A short poll meanwhile (until t = 16 s) does not shorten the lease.
        node.TouchPollPresence("chat:a", "c1", "", null, TimeSpan.Zero);
        clock.Now += TimeSpan.FromSeconds(38);
        Assert.Equal("c1", Assert.Single(node.GetPresence("chat:a")).Client);
        clock.Now += TimeSpan.FromSeconds(2);
        Assert.Empty(node.GetPresence("chat:a"));
        Assert.Equal(0, node.PollPresenceLeases());

        node.TouchPollPresence("chat:b", "c2", "", null, TimeSpan.Zero);
        clock.Now += TimeSpan.FromSeconds(16);
        Assert.Equal(1, node.PollPresenceLeases());
        node.SweepPollPresence();
        Assert.Equal(0, node.PollPresenceLeases());
    }

    [Fact]
    public async Task ChangedInfo_ReplacesTheEntry_AndNoInfoClearsIt()
    {
        var (node, _) = NewNode();
        await using var _ = node;
        node.TouchPollPresence("chat:a", "c1", "", Json("""{"name":"A"}"""), TimeSpan.Zero);
        node.TouchPollPresence("chat:a", "c1", "", Json("""{ "name" : "B" }"""), TimeSpan.Zero);
        Assert.Equal("B", Assert.Single(node.GetPresence("chat:a")).Info!.Value.GetProperty("name").GetString());
        node.TouchPollPresence("chat:a", "c1", "", null, TimeSpan.Zero);
        Assert.Null(Assert.Single(node.GetPresence("chat:a")).Info);
    }

    [Fact]
    public async Task ConcurrentPollsAndSweeps_KeepEveryLiveClient_AndTheCountExact()
    {
        var (node, clock) = NewNode(o => o.MaxPollPresencePerChannel = 1_000);
        await using var _ = node;
        // Old leases that the sweeps remove while the live clients keep polling.
        for (var i = 0; i < 200; i++)
        {
            node.TouchPollPresence("chat:a", $"old-{i}", "", null, TimeSpan.Zero);
        }
        clock.Now += TimeSpan.FromSeconds(16);
        using var stop = new CancellationTokenSource();
        var sweeper = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                node.SweepPollPresence();
                node.GetPresence("chat:a").Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
        });
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (var round = 0; round < 200; round++)
            {
                for (var i = 0; i < 50; i++)
                {
                    Assert.True(node.TouchPollPresence("chat:a", $"live-{t}-{i}", "", null, TimeSpan.Zero));
                }
            }
        })));
        stop.Cancel();
        await sweeper;
        node.SweepPollPresence();
        Assert.Equal(200, node.GetPresence("chat:a").Count);
        Assert.All(node.GetPresence("chat:a"), m => Assert.StartsWith("live-", m.Client, StringComparison.Ordinal));
        Assert.Equal(200, node.PollPresenceLeases());
    }

    [Fact]
    public async Task FullChannel_RefusesNewIds_UntilALeaseExpires()
    {
        var (node, clock) = NewNode(o => o.MaxPollPresencePerChannel = 2);
        await using var _ = node;
        Assert.True(node.TouchPollPresence("chat:a", "a", "", null, TimeSpan.Zero));
        clock.Now += TimeSpan.FromSeconds(10);
        Assert.True(node.TouchPollPresence("chat:a", "b", "", null, TimeSpan.Zero));
        Assert.False(node.TouchPollPresence("chat:a", "c", "", null, TimeSpan.Zero));
        Assert.True(node.TouchPollPresence("chat:a", "b", "", null, TimeSpan.Zero));
        clock.Now += TimeSpan.FromSeconds(6); // a has expired; b has not
        Assert.True(node.TouchPollPresence("chat:a", "c", "", null, TimeSpan.Zero));
        Assert.Equal(["b", "c"], node.GetPresence("chat:a").Select(m => m.Client).Order(StringComparer.Ordinal));
    }
}
