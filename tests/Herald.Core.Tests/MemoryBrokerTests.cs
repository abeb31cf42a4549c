using System.Collections.Concurrent;
using Herald.Brokers;
using Herald.Protocol;

namespace Herald.Core.Tests;

public sealed class MemoryBrokerTests
{
    private sealed class Recorder : IBrokerEventHandler
    {
        public ConcurrentQueue<(string Channel, ulong Offset, string Epoch)> Seen { get; } = new();

        public void HandlePublication(string channel, Publication publication, string epoch) => Seen.Enqueue((channel, publication.Offset, epoch));
    }

    private sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UnixEpoch.AddDays(1000);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static readonly HistoryPolicy Keep10 = new(10, TimeSpan.Zero);

    [Fact]
    public async Task Publish_AssignsGapFreeOffsetsPerChannel_InDeliveryOrder()
    {
        var broker = new MemoryBroker();
        var recorder = new Recorder();
        await broker.StartAsync(recorder);
        await broker.SubscribeAsync("a");
        await broker.SubscribeAsync("b");
        await Parallel.ForAsync(0, 4000, async (i, ct) => await broker.PublishAsync(i % 2 == 0 ? "a" : "b", "1"u8.ToArray(), null, Keep10, cancellationToken: ct));
        foreach (var channel in new[] { "a", "b" })
        {
            var offsets = recorder.Seen.Where(s => s.Channel == channel).Select(s => s.Offset).ToList();
            Assert.Equal(Enumerable.Range(1, 2000).Select(i => (ulong)i), offsets);
            Assert.Single(recorder.Seen.Where(s => s.Channel == channel).Select(s => s.Epoch).Distinct());
        }
    }

    [Fact]
    public async Task Epochs_DifferPerChannelAndPerBroker()
    {
        var first = new MemoryBroker();
        var second = new MemoryBroker();
        await first.StartAsync(new Recorder());
        await second.StartAsync(new Recorder());
        var a = await first.PublishAsync("x", "1"u8.ToArray(), null, Keep10);
        var b = await first.PublishAsync("y", "1"u8.ToArray(), null, Keep10);
        var c = await second.PublishAsync("x", "1"u8.ToArray(), null, Keep10);
        Assert.NotEqual(a.Epoch, b.Epoch);
        Assert.NotEqual(a.Epoch, c.Epoch); // a restarted process is a new epoch
    }

    [Fact]
    public async Task History_KeepsSizeAndTtl()
    {
        var time = new ManualTime();
        var broker = new MemoryBroker(time);
        await broker.StartAsync(new Recorder());
        var policy = new HistoryPolicy(3, TimeSpan.FromMinutes(1));
        for (var i = 0; i < 5; i++)
        {
            await broker.PublishAsync("c", "1"u8.ToArray(), null, policy);
            time.Now += TimeSpan.FromSeconds(20);
        }
        var history = await broker.ReadHistoryAsync("c", 0, 100, policy);
        // Size 3 keeps 3..5; offset 3 was published exactly 60 s ago, at the TTL edge, and is still kept.
        Assert.Equal(5UL, history.Position.Offset);
        Assert.Equal([3UL, 4UL, 5UL], history.Publications.Select(p => p.Offset));
        time.Now += TimeSpan.FromSeconds(1);
        Assert.Equal([4UL, 5UL], (await broker.ReadHistoryAsync("c", 0, 100, policy)).Publications.Select(p => p.Offset));
        time.Now += TimeSpan.FromMinutes(5);
        var expired = await broker.ReadHistoryAsync("c", 0, 100, policy);
        Assert.Empty(expired.Publications);
        Assert.Equal(5UL, expired.Position.Offset); // the head survives the window
    }

    [Fact]
    public async Task History_WithoutOffset_ReturnsNewestUpToLimit_OldestFirst()
    {
        var broker = new MemoryBroker();
        await broker.StartAsync(new Recorder());
        for (var i = 0; i < 8; i++)
        {
            await broker.PublishAsync("c", "1"u8.ToArray(), null, Keep10);
        }
        Assert.Equal([6UL, 7UL, 8UL], (await broker.ReadHistoryAsync("c", null, 3, Keep10)).Publications.Select(p => p.Offset));
        Assert.Equal([3UL, 4UL], (await broker.ReadHistoryAsync("c", 2, 2, Keep10)).Publications.Select(p => p.Offset));
    }

    [Fact]
    public async Task History_ReadsAfterAnyOffset_AcrossTheRingsWrapAround_MatchAScanOfTheWindow()
    {
        var broker = new MemoryBroker();
        await broker.StartAsync(new Recorder());
        var policy = new HistoryPolicy(7, TimeSpan.Zero);
        // 7 kept of 1..50: the storage wraps around many times; compare every (after, limit) with the obvious answer.
        for (var published = 1UL; published <= 50; published++)
        {
            await broker.PublishAsync("w", "1"u8.ToArray(), null, policy);
            var window = Enumerable.Range(1, (int)published).Select(i => (ulong)i).Where(o => o + 7 > published).ToList();
            for (var after = 0UL; after <= published; after++)
            {
                foreach (var limit in new[] { 1, 3, 100 })
                {
                    var read = await broker.ReadHistoryAsync("w", after, limit, policy);
                    Assert.Equal(published, read.Position.Offset);
                    Assert.Equal(window.Where(o => o > after).Take(limit), read.Publications.Select(p => p.Offset));
                }
            }
            Assert.Equal(window.TakeLast(3), (await broker.ReadHistoryAsync("w", null, 3, policy)).Publications.Select(p => p.Offset));
        }
        Assert.True(broker.TryPeekHead("w", out var head));
        Assert.Equal(50UL, head.Offset);
        Assert.False(broker.TryPeekHead("never-published", out _));
    }

    [Fact]
    public async Task Sweep_DropsHistoryPastItsTtl_InChannelsNobodyTouches_AndOffsetsGoOnFromTheHead()
    {
        var time = new ManualTime();
        var broker = new MemoryBroker(time);
        await broker.StartAsync(new Recorder());
        var policy = new HistoryPolicy(100, TimeSpan.FromMinutes(1));
        for (var channel = 0; channel < 50; channel++)
        {
            for (var i = 0; i < 20; i++)
            {
                await broker.PublishAsync($"once-{channel}", "1"u8.ToArray(), null, policy);
            }
        }
        await broker.PublishAsync("recent", "1"u8.ToArray(), null, policy);
        Assert.Equal(1001, broker.RetainedPublications);

        // Nobody reads or publishes to the 50 channels again; only the sweep sees that their history has expired.
        time.Now += TimeSpan.FromSeconds(61);
        await broker.PublishAsync("recent", "1"u8.ToArray(), null, policy);
        broker.Sweep();
        Assert.Equal(1, broker.RetainedPublications);

        // What stays is the head, in the same epoch: offsets go on from 21, never restart at 1.
        Assert.True(broker.TryPeekHead("once-7", out var head));
        Assert.Equal(20UL, head.Offset);
        var next = await broker.PublishAsync("once-7", "1"u8.ToArray(), null, policy);
        Assert.Equal(new StreamPosition(21, head.Epoch), next);
        Assert.Equal([21UL], (await broker.ReadHistoryAsync("once-7", 20, 100, policy)).Publications.Select(p => p.Offset));
        // A cursor from before the expiry is told what it missed is gone (no publications after 5 are held but 21).
        var stale = await broker.ReadHistoryAsync("once-7", 5, 100, policy);
        Assert.Equal([21UL], stale.Publications.Select(p => p.Offset));
    }

    // Regression: a read at the head took the head twice, so a publication landing in between made it answer a
    // position past its cursor with no publications, which clients took as recovered:false (the chaos test lost offsets).
    [Fact]
    public async Task History_ReadWhilePublishing_AlwaysHoldsEveryPublicationUpToTheAnsweredPosition()
    {
        var broker = new MemoryBroker();
        await broker.StartAsync(new Recorder());
        var policy = new HistoryPolicy(1_000_000, TimeSpan.Zero);
        const int Publications = 500_000;
        var publisher = Task.Run(async () =>
        {
            for (var i = 0; i < Publications; i++)
            {
                await broker.PublishAsync("race", "1"u8.ToArray(), null, policy);
            }
        });
        var cursor = 0UL;
        var reads = 0;
        while (!publisher.IsCompleted || cursor < Publications)
        {
            var read = await broker.ReadHistoryAsync("race", cursor, int.MaxValue, policy);
            reads++;
            var expected = read.Position.Offset - cursor;
            if ((ulong)read.Publications.Count != expected || (expected > 0 && read.Publications[0].Offset != cursor + 1))
            {
                Assert.Fail($"read {reads} after {cursor}: position {read.Position.Offset} but {read.Publications.Count} publications");
            }
            cursor = read.Position.Offset;
        }
        await publisher;
    }

    [Fact]
    public async Task Publication_Json_IsEncodedOnceAndCarriesInfo()
    {
        var broker = new MemoryBroker();
        var recorder = new Recorder();
        await broker.StartAsync(recorder);
        await broker.PublishAsync("c", """{"a":1}"""u8.ToArray(), new ClientInfo("alice", "n-1"), Keep10);
        var publication = (await broker.ReadHistoryAsync("c", 0, 1, Keep10)).Publications[0];
        Assert.Equal("""{"offset":1,"data":{"a":1},"info":{"user":"alice","client":"n-1"}}""", System.Text.Encoding.UTF8.GetString(publication.Json.Span));
        Assert.True(publication.Json.Span == publication.Json.Span); // the same cached bytes
        Assert.Equal("""{"push":{"channel":"c","pub":{"offset":1,"data":{"a":1},"info":{"user":"alice","client":"n-1"}}}}""",
            System.Text.Encoding.UTF8.GetString(ProtocolWriter.EncodePush("c", publication)));
    }

    [Fact]
    public async Task ReadingAChannelNeverPublishedTo_GivesTheEpochItsFirstPublicationWillHave()
    {
        var broker = new MemoryBroker();
        await broker.StartAsync(new Recorder());
        var before = await broker.ReadHistoryAsync("fresh", 0, 10, Keep10);
        Assert.Equal(0UL, before.Position.Offset);
        var published = await broker.PublishAsync("fresh", "1"u8.ToArray(), null, Keep10);
        Assert.Equal(new StreamPosition(1, before.Position.Epoch), published);
    }
}
