using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Tests.Infrastructure;

namespace Herald.Tests.Conformance;

/// <summary>
/// The contract written on <see cref="IBroker"/>, checked the same way for every implementation: a broker's test
/// project derives a sealed class from this one and says how to make nodes that share one backend.
/// </summary>
/// <remarks>
/// Linked (not copied) into each test project that binds a broker, as SignalR's
/// <c>ScaleoutHubLifetimeManagerTests&lt;TBackplane&gt;</c> is for each backplane. Every test names its channels with
/// <see cref="Channel"/>, whose prefix is random per test, so tests sharing one backend (one Redis server) never see
/// each other's channels. Nothing here waits for time to pass except the TTL test, through <see cref="AdvanceTimeAsync"/>.
/// </remarks>
public abstract class BrokerConformanceTests : IAsyncLifetime
{
    /// <summary>How long a test waits for a delivery before it fails.</summary>
    protected static readonly TimeSpan DeliveryTimeout = TimeSpan.FromSeconds(10);

    private const int OverlapsWanted = 10_000;
    private const int MaxConcurrentPublications = 30_000;
    private static readonly TimeSpan MaxConcurrentTime = TimeSpan.FromSeconds(2);
    private static readonly HistoryPolicy KeepAll = new(MaxConcurrentPublications + 1000, TimeSpan.Zero);

    private readonly List<IBroker> _brokers = [];
    private readonly string _prefix = "conf-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>
    /// Creates <paramref name="count"/> nodes, not started, that share one backend (one log store, one Redis server).
    /// Called once per test; the suite starts the nodes and disposes them at the end of the test.
    /// </summary>
    /// <param name="count">How many nodes.</param>
    /// <param name="time">The clock the backend should use for history TTL, or <see langword="null"/> for the system clock.
    /// A backend that cannot take it (its clock is the server's) ignores it and overrides <see cref="AdvanceTimeAsync"/>.</param>
    protected abstract Task<IBroker[]> CreateNodesAsync(int count, TimeProvider? time);

    /// <summary>Frees what <see cref="CreateNodesAsync"/> made besides the nodes (a shared store), after the nodes are disposed.</summary>
    protected virtual ValueTask DisposeBackendAsync() => ValueTask.CompletedTask;

    /// <summary>The history TTL of the TTL test. A backend on real time overrides it with a short one (a second or two).</summary>
    protected virtual TimeSpan HistoryTtl => TimeSpan.FromMinutes(1);

    /// <summary>
    /// Makes <paramref name="by"/> pass for the backend. By default it moves <paramref name="time"/>, the clock given to
    /// <see cref="CreateNodesAsync"/>; a backend on real time waits instead (the only wait in the suite that is not for a condition).
    /// </summary>
    protected virtual Task AdvanceTimeAsync(ManualTime time, TimeSpan by)
    {
        ArgumentNullException.ThrowIfNull(time);
        time.Advance(by);
        return Task.CompletedTask;
    }

    /// <summary>A channel name unique to this test.</summary>
    protected string Channel(string name) => $"{_prefix}-{name}";

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var broker in _brokers)
        {
            await broker.DisposeAsync();
        }
        await DisposeBackendAsync();
    }

    [Fact]
    public async Task Publish_ConcurrentPublishersOnSeveralNodes_GetGapFreeOffsets()
    {
        var nodes = await StartNodesAsync(3);
        var channel = Channel("gap-free");

        var positions = new ConcurrentBag<StreamPosition>();
        // Two publishers per node, 250 publications each at least.
        var total = await PublishConcurrentlyAsync([.. nodes, .. nodes], 250,
            async (node, _, _) => positions.Add(await node.Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll)));

        // Every offset 1..N once: no gap, no offset given to two publications.
        Assert.Equal(Range(1, total), positions.Select(p => p.Offset).Order());
        var epoch = Assert.Single(positions.Select(p => p.Epoch).Distinct());
        var history = await nodes[0].Broker.ReadHistoryAsync(channel, 0, total + 10, KeepAll);
        Assert.Equal(new StreamPosition((ulong)total, epoch), history.Position);
        Assert.Equal(Range(1, total), history.Publications.Select(p => p.Offset));
    }

    [Fact]
    public async Task Epoch_EveryPublicationReadAndDeliveryOfAChannel_ReportTheSameEpoch()
    {
        var nodes = await StartNodesAsync(2);
        var channels = new[] { Channel("epoch-a"), Channel("epoch-b") };
        foreach (var node in nodes)
        {
            foreach (var channel in channels)
            {
                await node.Broker.SubscribeAsync(channel);
            }
        }
        var published = new List<(string Channel, StreamPosition Position)>();
        for (var i = 0; i < 10; i++)
        {
            var channel = channels[i % 2];
            published.Add((channel, await nodes[i % nodes.Length].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll)));
        }
        foreach (var node in nodes)
        {
            await WaitForAsync(node, channels[0], 5);
            await WaitForAsync(node, channels[1], 5);
        }

        // Different channels may have different epochs; within one, every answer agrees.
        foreach (var channel in channels)
        {
            var epoch = Assert.Single(published.Where(p => p.Channel == channel).Select(p => p.Position.Epoch).Distinct());
            foreach (var node in nodes)
            {
                Assert.All(node.Received.Of(channel), d => Assert.Equal(epoch, d.Epoch));
                foreach (var after in new ulong?[] { null, 0, 2, 5, 6 })
                {
                    var read = await node.Broker.ReadHistoryAsync(channel, after, 100, KeepAll);
                    Assert.Equal(new StreamPosition(5, epoch), read.Position);
                }
            }
        }
    }

    [Fact]
    public async Task Read_ChannelNeverPublishedTo_IsOffsetZeroInTheEpochOfItsFirstPublication()
    {
        var nodes = await StartNodesAsync(2);
        var channel = Channel("fresh");

        var before = await nodes[0].Broker.ReadHistoryAsync(channel, null, 10, KeepAll);
        Assert.Equal(0UL, before.Position.Offset);
        Assert.Empty(before.Publications);
        Assert.False(string.IsNullOrEmpty(before.Position.Epoch));
        Assert.Equal(before.Position, (await nodes[1].Broker.ReadHistoryAsync(channel, 0, 10, KeepAll)).Position);

        // Published through the other node: the epoch promised by the read is kept.
        var first = await nodes[1].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll);
        Assert.Equal(new StreamPosition(1, before.Position.Epoch), first);
        Assert.Equal(first, (await nodes[0].Broker.ReadHistoryAsync(channel, 0, 10, KeepAll)).Position);
    }

    [Fact]
    public async Task History_BySize_KeepsTheNewestPublicationsAndTheHead()
    {
        var nodes = await StartNodesAsync(2);
        var kept = Channel("size-5");
        var none = Channel("size-0");
        var keep5 = new HistoryPolicy(5, TimeSpan.Zero);
        var keep0 = new HistoryPolicy(0, TimeSpan.Zero);
        StreamPosition last = default;
        for (var i = 0; i < 12; i++)
        {
            last = await nodes[i % 2].Broker.PublishAsync(kept, "1"u8.ToArray(), null, keep5);
            await nodes[i % 2].Broker.PublishAsync(none, "1"u8.ToArray(), null, keep0);
        }

        foreach (var node in nodes)
        {
            var all = await node.Broker.ReadHistoryAsync(kept, 0, 100, keep5);
            Assert.Equal(new StreamPosition(12, last.Epoch), all.Position);
            Assert.Equal(Range(8, 5), all.Publications.Select(p => p.Offset));
            Assert.Equal(Range(8, 5), (await node.Broker.ReadHistoryAsync(kept, null, 100, keep5)).Publications.Select(p => p.Offset));
            // A cursor older than what is held gets what is held after it.
            Assert.Equal(Range(8, 5), (await node.Broker.ReadHistoryAsync(kept, 3, 100, keep5)).Publications.Select(p => p.Offset));

            var empty = await node.Broker.ReadHistoryAsync(none, 0, 100, keep0);
            Assert.Equal(12UL, empty.Position.Offset);
            Assert.Empty(empty.Publications);
        }
        // Trimming never moves offsets back.
        Assert.Equal(new StreamPosition(13, last.Epoch), await nodes[0].Broker.PublishAsync(kept, "1"u8.ToArray(), null, keep5));
    }

    [Fact]
    public async Task History_ByTtl_DropsExpiredPublicationsAndKeepsTheHead()
    {
        var time = new ManualTime();
        var nodes = await StartNodesAsync(2, time);
        var channel = Channel("ttl");
        var ttl = HistoryTtl;
        var policy = new HistoryPolicy(100, ttl);
        // Steps of a third of the TTL keep every check a third of the TTL away from its edge.
        var step = ttl / 3;

        for (var i = 0; i < 3; i++)
        {
            await nodes[0].Broker.PublishAsync(channel, "1"u8.ToArray(), null, policy);
        }
        await AdvanceTimeAsync(time, 2 * step);
        StreamPosition head = default;
        for (var i = 0; i < 2; i++)
        {
            head = await nodes[1].Broker.PublishAsync(channel, "1"u8.ToArray(), null, policy);
        }
        Assert.Equal(Range(1, 5), (await nodes[0].Broker.ReadHistoryAsync(channel, 0, 100, policy)).Publications.Select(p => p.Offset));

        // 1..3 are now 4/3 of the TTL old, 4..5 are 2/3.
        await AdvanceTimeAsync(time, 2 * step);
        foreach (var node in nodes)
        {
            var read = await node.Broker.ReadHistoryAsync(channel, 0, 100, policy);
            Assert.Equal(head, read.Position);
            Assert.Equal(Range(4, 2), read.Publications.Select(p => p.Offset));
            Assert.Equal(Range(4, 2), (await node.Broker.ReadHistoryAsync(channel, null, 100, policy)).Publications.Select(p => p.Offset));
        }

        // Everything expired: the head and epoch stay, and offsets go on from them.
        await AdvanceTimeAsync(time, 3 * step);
        var expired = await nodes[1].Broker.ReadHistoryAsync(channel, 0, 100, policy);
        Assert.Equal(head, expired.Position);
        Assert.Empty(expired.Publications);
        Assert.Empty((await nodes[0].Broker.ReadHistoryAsync(channel, null, 100, policy)).Publications);
        Assert.Equal(new StreamPosition(6, head.Epoch), await nodes[0].Broker.PublishAsync(channel, "1"u8.ToArray(), null, policy));
        Assert.Equal(Range(6, 1), (await nodes[1].Broker.ReadHistoryAsync(channel, 0, 100, policy)).Publications.Select(p => p.Offset));
    }

    [Fact]
    public async Task Read_AfterACursor_ReturnsTheLaterPublicationsOldestFirstUpToTheLimit()
    {
        var nodes = await StartNodesAsync(1);
        var broker = nodes[0].Broker;
        var channel = Channel("cursor");
        var head = await PublishNumberedAsync(broker, channel, 10);

        foreach (var (after, limit, expected) in new (ulong, int, ulong[])[]
        {
            (0, 100, Range(1, 10)),
            (3, 4, Range(4, 4)),
            (7, 100, Range(8, 3)),
            (0, 1, Range(1, 1)),
            (9, 5, Range(10, 1)),
        })
        {
            var read = await broker.ReadHistoryAsync(channel, after, limit, KeepAll);
            Assert.Equal(head, read.Position);
            Assert.Equal(expected, read.Publications.Select(p => p.Offset));
            Assert.Equal(expected.Select(DataOf), read.Publications.Select(p => Encoding.UTF8.GetString(p.Data.Span)));
        }
    }

    [Fact]
    public async Task Read_WithoutACursor_ReturnsTheNewestLimitOldestFirst()
    {
        var nodes = await StartNodesAsync(1);
        var broker = nodes[0].Broker;
        var channel = Channel("newest");
        var head = await PublishNumberedAsync(broker, channel, 10);

        foreach (var (limit, expected) in new (int, ulong[])[] { (3, Range(8, 3)), (1, Range(10, 1)), (10, Range(1, 10)), (100, Range(1, 10)) })
        {
            var read = await broker.ReadHistoryAsync(channel, null, limit, KeepAll);
            Assert.Equal(head, read.Position);
            Assert.Equal(expected, read.Publications.Select(p => p.Offset));
            Assert.Equal(expected.Select(DataOf), read.Publications.Select(p => Encoding.UTF8.GetString(p.Data.Span)));
        }
    }

    [Fact]
    public async Task Read_CursorAtOrPastTheHead_ReturnsNoneWithTheHead()
    {
        var nodes = await StartNodesAsync(2);
        var channel = Channel("at-head");
        var head = await PublishNumberedAsync(nodes[1].Broker, channel, 10);

        foreach (var node in nodes)
        {
            foreach (var after in new ulong[] { 10, 11, 1000 })
            {
                var read = await node.Broker.ReadHistoryAsync(channel, after, 100, KeepAll);
                Assert.Equal(head, read.Position);
                Assert.Empty(read.Publications);
            }
        }
    }

    [Fact]
    public async Task Subscribe_NodeThatSubscribed_ReceivesEveryPublicationMadeAfterSubscribeReturns()
    {
        var nodes = await StartNodesAsync(2);
        var (subscriber, publisher) = (nodes[0], nodes[1]);
        var channel = Channel("subscribed");
        await PublishNumberedAsync(publisher.Broker, channel, 3);

        await subscriber.Broker.SubscribeAsync(channel);
        // Through both nodes, with no pause after SubscribeAsync: it is active when it returns.
        for (var i = 0; i < 40; i++)
        {
            await nodes[i % 2].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll);
        }

        await WaitForAsync(subscriber, channel, 40);
        Assert.Equal(Range(4, 40), subscriber.Received.OffsetsOf(channel));
    }

    [Fact]
    public async Task PayloadKind_BytesAndJson_AreDeliveredAndReadBackWithTheirKindAndBytesUnchanged()
    {
        var nodes = await StartNodesAsync(2);
        var (subscriber, publisher) = (nodes[0], nodes[1]);
        var channel = Channel("kinds");
        await subscriber.Broker.SubscribeAsync(channel);
        var all = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var info = new ClientInfo("ann", "c1");

        await publisher.Broker.PublishAsync(channel, all, info, KeepAll, PayloadKind.Binary);
        await publisher.Broker.PublishAsync(channel, """{"n":2}"""u8.ToArray(), null, KeepAll);
        await publisher.Broker.PublishAsync(channel, Array.Empty<byte>(), null, KeepAll, PayloadKind.Binary);
        // A binary payload that looks like the Pub/Sub header's separators must not confuse a broker's framing.
        await publisher.Broker.PublishAsync(channel, "1 b\n -1 -1 b\n"u8.ToArray(), null, KeepAll, new IdempotencyKey("k", TimeSpan.FromMinutes(1)), PayloadKind.Binary);

        await WaitForAsync(subscriber, channel, 4);
        var delivered = subscriber.Received.Of(channel).Select(d => d.Publication).ToList();
        var read = (await subscriber.Broker.ReadHistoryAsync(channel, 0, 10, KeepAll)).Publications;
        var backward = (await publisher.Broker.ReadHistoryBackwardAsync(channel, null, 10, KeepAll)).Publications.Reverse().ToList();
        foreach (var publications in new[] { delivered, read, backward })
        {
            Assert.Equal([PayloadKind.Binary, PayloadKind.Json, PayloadKind.Binary, PayloadKind.Binary], publications.Select(p => p.Kind));
            Assert.Equal(all, publications[0].Data.ToArray());
            Assert.Equal(info, publications[0].Info);
            Assert.Equal("""{"n":2}""", Encoding.UTF8.GetString(publications[1].Data.Span));
            Assert.True(publications[2].Data.IsEmpty);
            Assert.Equal("1 b\n -1 -1 b\n"u8.ToArray(), publications[3].Data.ToArray());
        }
    }

    [Fact]
    public async Task Subscribe_NodeThatDidNotSubscribe_ReceivesNone()
    {
        var nodes = await StartNodesAsync(2);
        var (subscriber, bystander) = (nodes[0], nodes[1]);
        var channel = Channel("not-subscribed");
        var other = Channel("other");
        await subscriber.Broker.SubscribeAsync(channel);
        // Subscribed to another channel, so a broker that sends every channel to every subscribed node is caught.
        await bystander.Broker.SubscribeAsync(other);

        for (var i = 0; i < 10; i++)
        {
            await nodes[i % 2].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll);
        }
        await WaitForAsync(subscriber, channel, 10);

        var fence = await FenceAsync(bystander, nodes[0].Broker, channel);
        Assert.Equal([fence], bystander.Received.OffsetsOf(channel));
    }

    [Fact]
    public async Task Unsubscribe_NodeReceivesNoMore_WhileOtherNodesStillDo()
    {
        var nodes = await StartNodesAsync(3);
        var leaving = nodes[1];
        var channel = Channel("unsubscribe");
        foreach (var node in nodes)
        {
            await node.Broker.SubscribeAsync(channel);
        }
        await PublishNumberedAsync(nodes[2].Broker, channel, 3);
        await WaitForAsync(leaving, channel, 3);

        await leaving.Broker.UnsubscribeAsync(channel);
        for (var i = 0; i < 6; i++)
        {
            await nodes[i % 3].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll);
        }
        await WaitForAsync(nodes[0], channel, 9);
        await WaitForAsync(nodes[2], channel, 9);

        var fence = await FenceAsync(leaving, nodes[0].Broker, channel);
        Assert.Equal(10UL, fence);
        Assert.Equal([1UL, 2, 3, 10], leaving.Received.OffsetsOf(channel));
        await WaitForAsync(nodes[0], channel, 10);
        await WaitForAsync(nodes[2], channel, 10);
    }

    [Fact]
    public async Task Deliver_ConcurrentPublishersOnAllNodes_EveryNodeSeesEachChannelsOffsetsInOrder()
    {
        var nodes = await StartNodesAsync(3);
        var channels = new[] { Channel("order-a"), Channel("order-b") };
        foreach (var node in nodes)
        {
            foreach (var channel in channels)
            {
                await node.Broker.SubscribeAsync(channel);
            }
        }
        var epochs = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        var published = new int[channels.Length];
        // Two publishers per node, 200 publications each at least, alternating between the channels.
        await PublishConcurrentlyAsync([.. nodes, .. nodes], 200, async (node, publisher, i) =>
        {
            var which = (i + publisher) % channels.Length;
            var position = await node.Broker.PublishAsync(channels[which], "1"u8.ToArray(), null, KeepAll);
            epochs.TryAdd(channels[which], position.Epoch);
            Interlocked.Increment(ref published[which]);
        });

        foreach (var node in nodes)
        {
            for (var which = 0; which < channels.Length; which++)
            {
                var channel = channels[which];
                await WaitForAsync(node, channel, published[which]);
                Assert.Equal(Range(1, published[which]), node.Received.OffsetsOf(channel));
                Assert.All(node.Received.Of(channel), d => Assert.Equal(epochs[channel], d.Epoch));
            }
            Assert.Equal(0, node.Received.Overlaps);
        }
    }

    [Fact]
    public async Task Publish_ThroughNodeB_ReachesNodeA()
    {
        var nodes = await StartNodesAsync(2);
        var (a, b) = (nodes[0], nodes[1]);
        var channel = Channel("b-to-a");
        await a.Broker.SubscribeAsync(channel);

        var position = await b.Broker.PublishAsync(channel, """{"from":"b"}"""u8.ToArray(), null, KeepAll);

        await WaitForAsync(a, channel, 1);
        var delivery = Assert.Single(a.Received.Of(channel));
        Assert.Equal(position, new StreamPosition(delivery.Publication.Offset, delivery.Epoch));
        Assert.Equal("""{"from":"b"}""", Encoding.UTF8.GetString(delivery.Publication.Data.Span));
    }

    [Fact]
    public async Task History_ReadThroughAnyNode_IsTheSame()
    {
        var nodes = await StartNodesAsync(3);
        var channel = Channel("same-history");
        var policy = new HistoryPolicy(20, TimeSpan.Zero);
        for (var i = 1; i <= 30; i++)
        {
            await nodes[i % 3].Broker.PublishAsync(channel, Encoding.UTF8.GetBytes(DataOf((ulong)i)), new ClientInfo("u", $"c-{i % 3}"), policy);
        }

        foreach (var (after, limit) in new (ulong?, int)[] { (null, 100), (null, 4), (0, 100), (15, 7), (29, 10), (30, 10) })
        {
            var reads = new List<string>();
            foreach (var node in nodes)
            {
                var read = await node.Broker.ReadHistoryAsync(channel, after, limit, policy);
                reads.Add($"{read.Position} " + string.Join(",", read.Publications.Select(p => $"{p.Offset}:{Encoding.UTF8.GetString(p.Data.Span)}:{p.Info?.Client}")));
            }
            Assert.Single(reads.Distinct());
        }
        Assert.Equal(Range(11, 20), (await nodes[2].Broker.ReadHistoryAsync(channel, 0, 100, policy)).Publications.Select(p => p.Offset));
    }

    [Fact]
    public async Task Publish_DataAndInfo_ComeBackUnchangedInDeliveryAndHistory()
    {
        var nodes = await StartNodesAsync(2);
        var (subscriber, publisher) = (nodes[0], nodes[1]);
        var channel = Channel("payload");
        await subscriber.Broker.SubscribeAsync(channel);
        var sent = new (string Data, ClientInfo? Info)[]
        {
            ("""{"text":"héllo \"quoted\" ✓","n":[1,2.5,null,true]}""", new ClientInfo("alice", "client-1")),
            ("42", null),
            ("\"\"", new ClientInfo("", "anonymous-client")),
        };
        foreach (var (data, info) in sent)
        {
            await publisher.Broker.PublishAsync(channel, Encoding.UTF8.GetBytes(data), info, KeepAll);
        }

        await WaitForAsync(subscriber, channel, sent.Length);
        var delivered = subscriber.Received.Of(channel).Select(d => d.Publication).ToList();
        foreach (var node in nodes)
        {
            foreach (var received in new[] { delivered, (await node.Broker.ReadHistoryAsync(channel, 0, 100, KeepAll)).Publications })
            {
                Assert.Equal(sent.Length, received.Count);
                for (var i = 0; i < sent.Length; i++)
                {
                    Assert.Equal((ulong)i + 1, received[i].Offset);
                    Assert.Equal(sent[i].Data, Encoding.UTF8.GetString(received[i].Data.Span));
                    Assert.Equal(sent[i].Info?.User, received[i].Info?.User);
                    Assert.Equal(sent[i].Info?.Client, received[i].Info?.Client);
                }
            }
        }
    }

    [Fact]
    public async Task Control_MessagesFromTwoNodes_ReachEveryStartedNodeOnce_InEachSendersOrder()
    {
        var nodes = await StartNodesAsync(3);
        const int PerSender = 50;
        // Messages carry this test's prefix: on a shared backend, other tests' nodes hear other messages too.
        for (var i = 0; i < PerSender; i++)
        {
            await nodes[0].Broker.SendControlAsync(Encoding.UTF8.GetBytes($"{_prefix} a {i}"));
            await nodes[1].Broker.SendControlAsync(Encoding.UTF8.GetBytes($"{_prefix} b {i}"));
        }

        foreach (var node in nodes)
        {
            await Wait.UntilAsync(() => node.Received.ControlsStartingWith(_prefix).Count >= 2 * PerSender, DeliveryTimeout,
                $"{2 * PerSender} control messages at a node (it has {node.Received.ControlsStartingWith(_prefix).Count})");
            var received = node.Received.ControlsStartingWith(_prefix);
            Assert.Equal(Enumerable.Range(0, PerSender).Select(i => $"{_prefix} a {i}"), received.Where(m => m.StartsWith($"{_prefix} a ", StringComparison.Ordinal)));
            Assert.Equal(Enumerable.Range(0, PerSender).Select(i => $"{_prefix} b {i}"), received.Where(m => m.StartsWith($"{_prefix} b ", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public async Task Control_BinaryMessage_ArrivesByteForByte_AndTheSenderMayReuseItsBuffer()
    {
        var nodes = await StartNodesAsync(2);
        var buffer = new byte[256];
        var tag = Encoding.UTF8.GetBytes(_prefix);
        tag.CopyTo(buffer, 0);
        for (var i = tag.Length; i < buffer.Length; i++)
        {
            buffer[i] = (byte)i; // every byte value from here on, newlines and zeros included
        }
        var expected = buffer.ToArray();
        await nodes[0].Broker.SendControlAsync(buffer);
        Array.Clear(buffer);

        foreach (var node in nodes)
        {
            await Wait.UntilAsync(() => node.Received.ControlsStartingWith(_prefix).Count >= 1, DeliveryTimeout, "the binary control message");
            Assert.Equal(expected, node.Received.RawControlsStartingWith(tag).Single());
        }
    }

    [Fact]
    public async Task PublishIdempotent_RepeatOfAKeyThroughAnyNode_AnswersTheFirstPositionAndPublishesNothing()
    {
        var nodes = await StartNodesAsync(2);
        var (subscriber, other) = (nodes[0], nodes[1]);
        var channel = Channel("idem");
        var elsewhere = Channel("idem-elsewhere");
        var window = new IdempotencyKey("order:42", TimeSpan.FromMinutes(1));
        await subscriber.Broker.SubscribeAsync(channel);

        var first = await other.Broker.PublishAsync(channel, """{"n":1}"""u8.ToArray(), null, KeepAll, window);
        Assert.Equal(new PublishResult(new StreamPosition(1, first.Position.Epoch), Repeated: false), first);
        // Through the other node, with other data: the key names the publication, the data of a repeat is not looked at.
        foreach (var node in nodes)
        {
            Assert.Equal(first with { Repeated = true }, await node.Broker.PublishAsync(channel, """{"n":"again"}"""u8.ToArray(), null, KeepAll, window));
        }
        // Another key, and the same key on another channel, are publications of their own.
        var second = await subscriber.Broker.PublishAsync(channel, """{"n":2}"""u8.ToArray(), null, KeepAll, window with { Key = "order:43" });
        Assert.Equal(new PublishResult(new StreamPosition(2, first.Position.Epoch), Repeated: false), second);
        Assert.Equal(1UL, (await other.Broker.PublishAsync(elsewhere, "1"u8.ToArray(), null, KeepAll, window)).Position.Offset);
        // A publish without a key never counts as a repeat of one.
        Assert.Equal(3UL, (await other.Broker.PublishAsync(channel, """{"n":3}"""u8.ToArray(), null, KeepAll)).Offset);

        var history = await other.Broker.ReadHistoryAsync(channel, 0, 100, KeepAll);
        Assert.Equal(["""{"n":1}""", """{"n":2}""", """{"n":3}"""], history.Publications.Select(p => Encoding.UTF8.GetString(p.Data.Span)));
        var fence = await FenceAsync(subscriber, other.Broker, channel);
        Assert.Equal([1UL, 2, 3, fence], subscriber.Received.OffsetsOf(channel));
    }

    [Fact]
    public async Task PublishIdempotent_ConcurrentRepeatsThroughSeveralNodes_MakeOnePublicationPerKeyAndAllGetItsPosition()
    {
        const int Keys = 25;
        var nodes = await StartNodesAsync(3);
        var channel = Channel("idem-race");
        var answers = new ConcurrentBag<(string Key, PublishResult Result)>();

        // Two publishers per node, each sending every key (over and over while the race lasts).
        await PublishConcurrentlyAsync([.. nodes, .. nodes], Keys, async (node, publisher, i) =>
        {
            var key = $"k{i % Keys}";
            answers.Add((key, await node.Broker.PublishAsync(channel, Encoding.UTF8.GetBytes($$"""{"key":"{{key}}","by":{{publisher}}}"""), null, KeepAll, new IdempotencyKey(key, TimeSpan.FromMinutes(1)))));
        });

        var byKey = answers.GroupBy(a => a.Key).ToDictionary(g => g.Key, g => g.Select(a => a.Result.Position).Distinct().ToList());
        Assert.Equal(Keys, byKey.Count);
        Assert.All(byKey, k => Assert.Single(k.Value));
        Assert.Equal(Keys, answers.Count(a => !a.Result.Repeated));
        Assert.Equal(Range(1, Keys), byKey.Values.Select(v => v[0].Offset).Order());
        var history = await nodes[1].Broker.ReadHistoryAsync(channel, 0, 1000, KeepAll);
        Assert.Equal(new StreamPosition(Keys, byKey["k0"][0].Epoch), history.Position);
        // Each publication in history is the one its key's answers point at.
        foreach (var publication in history.Publications)
        {
            var key = JsonDocument.Parse(publication.Data).RootElement.GetProperty("key").GetString()!;
            Assert.Equal(publication.Offset, byKey[key][0].Offset);
        }
    }

    [Fact]
    public async Task PublishIdempotent_AfterTheWindow_PublishesAgainAndRemembersTheNewPosition()
    {
        var time = new ManualTime();
        var nodes = await StartNodesAsync(2, time);
        var channel = Channel("idem-window");
        var key = new IdempotencyKey("retry-1", HistoryTtl);
        var step = HistoryTtl / 3;

        var first = await nodes[0].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll, key);
        await AdvanceTimeAsync(time, step);
        Assert.Equal(first with { Repeated = true }, await nodes[1].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll, key));

        // 4/3 of the window after the first: forgotten.
        await AdvanceTimeAsync(time, 3 * step);
        var again = await nodes[1].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll, key);
        Assert.Equal(new PublishResult(new StreamPosition(2, first.Position.Epoch), Repeated: false), again);
        Assert.Equal(again with { Repeated = true }, await nodes[0].Broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll, key));
    }

    [Fact]
    public async Task ReadBackward_BeforeACursorOrFromTheNewest_ReturnsNewestFirstUpToTheLimitAndSaysWhetherOlderAreHeld()
    {
        var nodes = await StartNodesAsync(2);
        var channel = Channel("backward");
        var head = await PublishNumberedAsync(nodes[1].Broker, channel, 10);

        foreach (var node in nodes)
        {
            foreach (var (before, limit, expected, more) in new (ulong?, int, ulong[], bool)[]
            {
                (null, 3, [10, 9, 8], true),
                (null, 10, Range(1, 10).Reverse().ToArray(), false),
                (null, 100, Range(1, 10).Reverse().ToArray(), false),
                (8, 3, [7, 6, 5], true),
                (4, 3, [3, 2, 1], false),
                (3, 5, [2, 1], false),
                (11, 2, [10, 9], true),
                (1, 5, [], false),
                (0, 5, [], false),
            })
            {
                var read = await node.Broker.ReadHistoryBackwardAsync(channel, before, limit, KeepAll);
                Assert.Equal(head, read.Position);
                Assert.Equal(expected, read.Publications.Select(p => p.Offset));
                Assert.Equal(expected.Select(DataOf), read.Publications.Select(p => Encoding.UTF8.GetString(p.Data.Span)));
                Assert.True(more == read.More, $"before {before}, limit {limit}: More should be {more}");
            }
        }
        var fresh = await nodes[0].Broker.ReadHistoryBackwardAsync(Channel("backward-fresh"), null, 10, KeepAll);
        Assert.Equal(0UL, fresh.Position.Offset);
        Assert.Empty(fresh.Publications);
        Assert.False(fresh.More);
    }

    [Fact]
    public async Task ReadBackward_TrimmedHistory_StopsAtTheOldestHeld()
    {
        var nodes = await StartNodesAsync(1);
        var broker = nodes[0].Broker;
        var channel = Channel("backward-trimmed");
        var keep5 = new HistoryPolicy(5, TimeSpan.Zero);
        for (var i = 0; i < 12; i++)
        {
            await broker.PublishAsync(channel, "1"u8.ToArray(), null, keep5);
        }

        var newest = await broker.ReadHistoryBackwardAsync(channel, null, 3, keep5);
        Assert.Equal([12UL, 11, 10], newest.Publications.Select(p => p.Offset));
        Assert.True(newest.More);
        var rest = await broker.ReadHistoryBackwardAsync(channel, 10, 3, keep5);
        Assert.Equal([9UL, 8], rest.Publications.Select(p => p.Offset));
        Assert.False(rest.More);
        var exactly = await broker.ReadHistoryBackwardAsync(channel, 11, 3, keep5);
        Assert.Equal([10UL, 9, 8], exactly.Publications.Select(p => p.Offset));
        Assert.False(exactly.More);
        Assert.Empty((await broker.ReadHistoryBackwardAsync(channel, 8, 3, keep5)).Publications);
    }

    [Fact]
    public async Task ReadForward_SaysWhetherNewerPublicationsAreHeldPastThePage()
    {
        var nodes = await StartNodesAsync(2);
        var channel = Channel("forward-more");
        await PublishNumberedAsync(nodes[0].Broker, channel, 10);

        foreach (var node in nodes)
        {
            foreach (var (after, limit, expected, more) in new (ulong?, int, ulong[], bool)[]
            {
                (0, 4, [1, 2, 3, 4], true),
                (6, 4, [7, 8, 9, 10], false),
                (6, 10, [7, 8, 9, 10], false),
                (null, 3, [8, 9, 10], false),
                (10, 3, [], false),
            })
            {
                var read = await node.Broker.ReadHistoryAsync(channel, after, limit, KeepAll);
                Assert.Equal(expected, read.Publications.Select(p => p.Offset));
                Assert.True(more == read.More, $"after {after}, limit {limit}: More should be {more}");
            }
        }
    }

    /// <summary>Creates and starts <paramref name="count"/> nodes on one backend, each with its own recorder.</summary>
    protected async Task<Node[]> StartNodesAsync(int count, TimeProvider? time = null)
    {
        var brokers = await CreateNodesAsync(count, time);
        _brokers.AddRange(brokers);
        Assert.Equal(count, brokers.Length);
        var nodes = new Node[count];
        for (var i = 0; i < count; i++)
        {
            var recorder = new Recorder();
            await brokers[i].StartAsync(recorder);
            nodes[i] = new Node(brokers[i], recorder);
        }
        return nodes;
    }

    /// <summary>Waits until <paramref name="node"/> has received <paramref name="count"/> publications of <paramref name="channel"/>.</summary>
    protected static Task WaitForAsync(Node node, string channel, int count) =>
        Wait.UntilAsync(() => node.Received.CountOf(channel) >= count, DeliveryTimeout,
            $"{count} publications of {channel} at a node (it has {node.Received.CountOf(channel)})");

    /// <summary>
    /// Subscribes <paramref name="node"/>, publishes one publication and waits for it there. Delivery is in offset
    /// order, so once it has arrived any earlier publication the node was wrongly sent has arrived too: what the node
    /// holds then is all it will ever get from before, with no sleep to wait for what should not come.
    /// </summary>
    private static async Task<ulong> FenceAsync(Node node, IBroker publisher, string channel)
    {
        await node.Broker.SubscribeAsync(channel);
        var fence = await publisher.PublishAsync(channel, "\"fence\""u8.ToArray(), null, KeepAll);
        await Wait.UntilAsync(() => node.Received.OffsetsOf(channel).Contains(fence.Offset), DeliveryTimeout, $"the fence {fence.Offset} of {channel}");
        return fence.Offset;
    }

    /// <summary>
    /// Runs one publisher per entry of <paramref name="publishers"/> (the node it publishes through), all at once, each
    /// calling <paramref name="publish"/>(node, publisher index, iteration) at least <paramref name="minimumEach"/>
    /// times; returns how many calls were made in all.
    /// </summary>
    /// <remarks>
    /// A broker in this process publishes synchronously, so its publishers would race only if they ran on threads of
    /// their own at the same moment: a burst of pool work items often runs on one pool thread, one after another. So
    /// each publisher starts on a dedicated thread (where it stays while its publishes complete synchronously), and
    /// they go on past the minimum until two of them have been inside a publish at the same moment
    /// <see cref="OverlapsWanted"/> times, or a cap is reached. So many because on a busy machine most overlaps are a
    /// publisher preempted inside a publish rather than two running side by side (a thousand did not catch a publish
    /// without its lock). A broker that awaits I/O overlaps on nearly every call, so it stops after about that many publications.
    /// </remarks>
    private static async Task<int> PublishConcurrentlyAsync(IReadOnlyList<Node> publishers, int minimumEach, Func<Node, int, int, Task> publish)
    {
        int inside = 0, overlaps = 0, total = 0;
        var clock = Stopwatch.StartNew();
        // The cap leaves room for every publisher's minimum: one publisher that runs alone up to the cap before the others
        // start (as on a loaded machine) must not push the total past what KeepAll holds, or history would lose offset 1.
        var cap = MaxConcurrentPublications - (publishers.Count * minimumEach);
        Assert.True(cap > 0, "the publishers' minimums exceed what KeepAll holds");
        bool Enough() =>
            Volatile.Read(ref overlaps) >= OverlapsWanted || Volatile.Read(ref total) >= cap || clock.Elapsed >= MaxConcurrentTime;

        async Task RunAsync(Node node, int index)
        {
            for (var i = 0; i < minimumEach || !Enough(); i++)
            {
                Interlocked.Increment(ref total);
                if (Interlocked.Increment(ref inside) > 1)
                {
                    Interlocked.Increment(ref overlaps);
                }
                try
                {
                    await publish(node, index, i);
                }
                finally
                {
                    Interlocked.Decrement(ref inside);
                }
            }
        }

        await Task.WhenAll(publishers.Select((node, index) =>
            Task.Factory.StartNew(() => RunAsync(node, index), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap()));
        return total;
    }

    /// <summary>Publishes 1..<paramref name="count"/> with the data <see cref="DataOf"/>, one after another; returns the last position.</summary>
    private static async Task<StreamPosition> PublishNumberedAsync(IBroker broker, string channel, int count)
    {
        StreamPosition last = default;
        for (var i = 1; i <= count; i++)
        {
            last = await broker.PublishAsync(channel, Encoding.UTF8.GetBytes(DataOf((ulong)i)), null, KeepAll);
            Assert.Equal((ulong)i, last.Offset);
        }
        return last;
    }

    private static string DataOf(ulong n) => $$"""{"n":{{n}}}""";

    private static ulong[] Range(int first, int count) => Enumerable.Range(first, count).Select(i => (ulong)i).ToArray();

    /// <summary>One started node and what it has received.</summary>
    protected sealed record Node(IBroker Broker, Recorder Received);

    /// <summary>One call of <see cref="IBrokerEventHandler.HandlePublication"/>.</summary>
    protected sealed record Delivery(string Channel, Publication Publication, string Epoch);

    /// <summary>Records every delivery in arrival order, and counts calls for one channel that overlapped.</summary>
    protected sealed class Recorder : IBrokerEventHandler
    {
        private readonly ConcurrentQueue<Delivery> _seen = new();
        private readonly ConcurrentQueue<byte[]> _controls = new();
        private readonly ConcurrentDictionary<string, StrongBox<int>> _inFlight = new(StringComparer.Ordinal);
        private int _overlaps;

        /// <summary>Calls made while another call for the same channel was still running (the contract allows none).</summary>
        public int Overlaps => Volatile.Read(ref _overlaps);

        public void HandlePublication(string channel, Publication publication, string epoch)
        {
            var inFlight = _inFlight.GetOrAdd(channel, static _ => new StrongBox<int>());
            if (Interlocked.Increment(ref inFlight.Value) > 1)
            {
                Interlocked.Increment(ref _overlaps);
            }
            _seen.Enqueue(new Delivery(channel, publication, epoch));
            Interlocked.Decrement(ref inFlight.Value);
        }

        public void HandleControl(ReadOnlyMemory<byte> message) => _controls.Enqueue(message.ToArray());

        /// <summary>The control messages received whose UTF-8 text starts with <paramref name="prefix"/>, in arrival order.</summary>
        public IReadOnlyList<string> ControlsStartingWith(string prefix) =>
            _controls.Select(m => Encoding.UTF8.GetString(m)).Where(m => m.StartsWith(prefix, StringComparison.Ordinal)).ToList();

        public IReadOnlyList<byte[]> RawControlsStartingWith(byte[] prefix) => _controls.Where(m => m.AsSpan().StartsWith(prefix)).ToList();

        public IReadOnlyList<Delivery> Of(string channel) => _seen.Where(d => d.Channel == channel).ToList();

        public IReadOnlyList<ulong> OffsetsOf(string channel) => _seen.Where(d => d.Channel == channel).Select(d => d.Publication.Offset).ToList();

        public int CountOf(string channel) => _seen.Count(d => d.Channel == channel);
    }

    /// <summary>A clock that moves only when told to; safe to read from any thread.</summary>
    protected sealed class ManualTime : TimeProvider
    {
        private long _ticks = DateTimeOffset.UtcNow.UtcTicks;

        public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }
}
