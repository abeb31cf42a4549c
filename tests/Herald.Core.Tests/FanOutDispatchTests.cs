using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using System.Text;
using System.Text.Json;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;
using Herald.Tests.Infrastructure;

namespace Herald.Core.Tests;

/// <summary>
/// The fan-out dispatcher: a publish returns once the log append is done, before the delivery to subscribers, which a
/// per-channel worker does in offset order; the backlog is bounded (by default a publish never waits and a backlog at
/// the limit is dropped, its subscribers closed with 4004 to recover; with Herald:PublishBackpressure publishers wait
/// at the limit and twice the limit is dropped), and shutdown drops it. The fan-out's work items are held by the test's
/// scheduler, so "not delivered yet" is a fact of the test, not a race.
/// </summary>
public sealed class FanOutDispatchTests
{
    private const string Channel = "chat:dispatch";

    // The namespace's policy: a read with another one would trim the log to it.
    private static readonly HistoryPolicy Policy = new(1000, TimeSpan.Zero);

    /// <summary>Holds the node's fan-out work items until the test runs them.</summary>
    private sealed class HeldScheduler
    {
        private readonly ConcurrentQueue<IThreadPoolWorkItem> _held = new();

        public int Held => _held.Count;

        public void Schedule(IThreadPoolWorkItem work) => _held.Enqueue(work);

        /// <summary>Runs held work items, those they schedule included, until none is left.</summary>
        public void RunAll()
        {
            while (_held.TryDequeue(out var work))
            {
                work.Execute();
            }
        }
    }

    private sealed class Transport : ISessionTransport
    {
        public string Name => "test";

        public WireEncoding Encoding => WireEncoding.Json;

        public ConcurrentQueue<int> Closes { get; } = new();

        public void Close(int code, string reason) => Closes.Enqueue(code);
    }

    private static async Task<(HeraldNode Node, HeldScheduler Scheduler)> StartAsync(int maxBacklog = 1000, bool backpressure = false)
    {
        var options = new HeraldOptions { AllowAnonymous = true, MaxDispatchBacklog = maxBacklog, PublishBackpressure = backpressure };
        options.Namespaces["chat"] = new NamespaceOptions { HistorySize = 1000, HistoryTtl = TimeSpan.Zero };
        var scheduler = new HeldScheduler();
        var node = new HeraldNode(options, new MemoryBroker()) { ScheduleFanOut = scheduler.Schedule };
        await node.StartAsync();
        return (node, scheduler);
    }

    private static async Task<(ClientSession Session, Transport Transport)> SubscribeAsync(HeraldNode node)
    {
        var transport = new Transport();
        var session = new ClientSession(node, transport);
        await session.HandleMessageAsync(Encoding.UTF8.GetBytes($$"""{"id":1,"op":"connect"}{{"\n"}}{"id":2,"op":"subscribe","channel":"{{Channel}}"}"""));
        Assert.Equal(2, Drain(session).Count); // the two replies
        return (session, transport);
    }

    private static byte[] SubscribeFromStart(string epoch) =>
        Encoding.UTF8.GetBytes("{\"id\":1,\"op\":\"connect\"}\n{\"id\":2,\"op\":\"subscribe\",\"channel\":\"" + Channel + "\",\"since\":{\"offset\":0,\"epoch\":\"" + epoch + "\"}}");

    private static List<JsonElement> Drain(ClientSession session)
    {
        var messages = new List<JsonElement>();
        while (session.Outbound.Reader.TryRead(out var message))
        {
            messages.Add(JsonDocument.Parse(message.Bytes).RootElement.Clone());
            session.Outbound.Written(message.Bytes.Length);
        }
        return messages;
    }

    private static List<ulong> PushedOffsets(ClientSession session) =>
        [.. Drain(session).Select(m => m.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64())];

    private static ValueTask<HeraldResult<StreamPosition>> PublishAsync(HeraldNode node, int n) =>
        node.Channels.PublishAsync(null, Channel, JsonDocument.Parse($$"""{"n":{{n}}}""").RootElement, null);

    private static ulong OffsetOf(HeraldResult<StreamPosition> result) =>
        Assert.IsType<StreamPosition>(result.TryGetValue(out var position, out _) ? position : null).Offset;

    [Fact]
    public async Task Publish_ReturnsBeforeTheFanOut_WithThePublicationInTheLogAndTheHeadKnown()
    {
        var (node, scheduler) = await StartAsync();
        await using var _ = node;
        var (session, _) = await SubscribeAsync(node);

        var published = PublishAsync(node, 1).AsTask();

        // The publish answered although no subscriber has the publication yet: only the append was waited for.
        Assert.True(published.IsCompletedSuccessfully);
        Assert.Equal(1UL, OffsetOf(await published));
        Assert.Empty(Drain(session));
        Assert.Equal(1, node.DispatchBacklog);
        Assert.Equal(1, scheduler.Held);
        // A poll woken now would find it: it is in the log, and the node's known head says so, no further.
        var read = await node.Broker.ReadHistoryAsync(Channel, 0, 10, Policy);
        Assert.Equal(1UL, Assert.Single(read.Publications).Offset);
        Assert.True(node.TryGetKnownHead(Channel, out var head));
        Assert.Equal(read.Position, head);

        scheduler.RunAll();

        Assert.Equal([1UL], PushedOffsets(session));
        Assert.Equal(0, node.DispatchBacklog);
        Assert.Equal(1, node.Metrics.Deliveries);
    }

    [Fact]
    public async Task ParkedPoll_IsWokenByTheFanOutWorker_AndFindsThePublicationInTheLog()
    {
        var (node, scheduler) = await StartAsync();
        await using var _ = node;
        using var poll = await node.ParkAsync([Channel], CancellationToken.None);

        Assert.Equal(1UL, OffsetOf(await PublishAsync(node, 1)));
        Assert.False(poll.Woken.IsCompleted); // waking polls is fan-out work, not the publisher's

        scheduler.RunAll();

        await poll.Woken.WaitAsync(TimeSpan.FromSeconds(10));
        var read = await node.Broker.ReadHistoryAsync(Channel, 0, 10, Policy);
        Assert.Equal(1UL, Assert.Single(read.Publications).Offset);
    }

    [Fact]
    public async Task HeldFanOut_DeliversEveryOffsetOnceInOrder_AcrossManyTurns()
    {
        var (node, scheduler) = await StartAsync();
        await using var _ = node;
        var subscribers = new List<ClientSession>();
        for (var i = 0; i < 3; i++)
        {
            subscribers.Add((await SubscribeAsync(node)).Session);
        }
        for (var n = 1; n <= 100; n++)
        {
            Assert.Equal((ulong)n, OffsetOf(await PublishAsync(node, n)));
        }
        Assert.Equal(1, scheduler.Held); // one worker per channel, scheduled when its queue stopped being empty

        scheduler.RunAll();

        foreach (var session in subscribers)
        {
            Assert.Equal(Enumerable.Range(1, 100).Select(n => (ulong)n), PushedOffsets(session));
        }
    }

    [Fact]
    public async Task SubscribeWhilePublicationsWaitForFanOut_GetsThemInTheReply_AndNoDuplicateLater()
    {
        var (node, scheduler) = await StartAsync();
        await using var _ = node;
        var (early, _) = await SubscribeAsync(node);
        for (var n = 1; n <= 5; n++)
        {
            await PublishAsync(node, n);
        }
        // Registered and read while offsets 1-5 are appended but not yet fanned out: the history read covers them.
        var transport = new Transport();
        var late = new ClientSession(node, transport);
        await late.HandleMessageAsync(SubscribeFromStart((await node.Broker.ReadHistoryAsync(Channel, null, 0, Policy)).Position.Epoch));
        var replies = Drain(late);
        Assert.Equal([1UL, 2, 3, 4, 5], replies[1].GetProperty("result").GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        await PublishAsync(node, 6);

        scheduler.RunAll();

        Assert.Equal([6UL], PushedOffsets(late));
        Assert.Equal([1UL, 2, 3, 4, 5, 6], PushedOffsets(early));
        Assert.Empty(transport.Closes);
    }

    [Fact]
    public async Task PublishAtTheBacklogLimit_NeverWaits_TheBacklogIsDropped_AndItsSubscribersRecoverEveryOffset()
    {
        const int Limit = 16;
        var (node, scheduler) = await StartAsync(Limit);
        await using var _ = node;
        var (session, transport) = await SubscribeAsync(node);
        for (var n = 1; n <= Limit; n++)
        {
            Assert.Equal((ulong)n, OffsetOf(await PublishAsync(node, n)));
        }
        Assert.Equal(Limit, node.DispatchBacklog);

        // The fan-out is held: the publication past the limit is appended and answered at once all the same.
        var published = PublishAsync(node, Limit + 1).AsTask();

        Assert.True(published.IsCompletedSuccessfully);
        Assert.Equal((ulong)Limit + 1, OffsetOf(await published));
        Assert.Equal(0, node.Metrics.PublishFanOutWaits);
        Assert.Equal(1, node.Metrics.DispatchOverflows);
        Assert.Equal(1, node.DispatchBacklog); // the backlog went; the newest publication stays queued

        scheduler.RunAll();

        // Told, never a silent gap: the subscriber is closed with 4004, and a resubscribe from where it was recovers all.
        Assert.Empty(PushedOffsets(session));
        Assert.Equal([CloseCodes.InsufficientState], transport.Closes);
        var again = new ClientSession(node, new Transport());
        await again.HandleMessageAsync(SubscribeFromStart((await node.Broker.ReadHistoryAsync(Channel, null, 0, Policy)).Position.Epoch));
        var result = Drain(again)[1].GetProperty("result");
        Assert.True(result.GetProperty("recovered").GetBoolean());
        Assert.Equal(Enumerable.Range(1, Limit + 1).Select(n => (ulong)n), result.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
    }

    [Fact]
    public async Task ConflatedChannel_BacklogDropped_SubscriberGetsTheNewestBehindASkipNotice_AndStaysOpen()
    {
        const int Limit = 16;
        const string Latest = "latest:dispatch";
        var options = new HeraldOptions { AllowAnonymous = true, MaxDispatchBacklog = Limit };
        options.Namespaces["latest"] = new NamespaceOptions { HistorySize = 100, HistoryTtl = TimeSpan.Zero, Conflate = true };
        var scheduler = new HeldScheduler();
        await using var node = new HeraldNode(options, new MemoryBroker()) { ScheduleFanOut = scheduler.Schedule };
        await node.StartAsync();
        var transport = new Transport();
        var session = new ClientSession(node, transport);
        await session.HandleMessageAsync(Encoding.UTF8.GetBytes($$"""{"id":1,"op":"connect"}{{"\n"}}{"id":2,"op":"subscribe","channel":"{{Latest}}"}"""));
        Assert.Equal(2, Drain(session).Count);
        for (var n = 1; n <= Limit + 1; n++)
        {
            await node.Channels.PublishAsync(null, Latest, JsonDocument.Parse($$"""{"n":{{n}}}""").RootElement, null);
        }
        Assert.Equal(1, node.Metrics.DispatchOverflows);

        scheduler.RunAll();

        // A latest-value subscriber is owed the newest, not every offset: the dropped ones are skipped, and it is told.
        var messages = Drain(session);
        Assert.Equal(2, messages.Count);
        var skipped = messages[0].GetProperty("push").GetProperty("skipped");
        Assert.Equal((1UL, (ulong)Limit), (skipped.GetProperty("from").GetUInt64(), skipped.GetProperty("to").GetUInt64()));
        Assert.Equal((ulong)Limit + 1, messages[1].GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
        Assert.Empty(transport.Closes);
        Assert.Equal(Limit, node.Metrics.ConflatedSkips);
    }

    [Fact]
    public async Task WithPublishBackpressure_PublishAtTheBacklogLimit_WaitsBeforeAppending_UntilTheFanOutCatchesUp()
    {
        const int Limit = 16;
        var (node, scheduler) = await StartAsync(Limit, backpressure: true);
        await using var _ = node;
        var (session, _) = await SubscribeAsync(node);
        for (var n = 1; n <= Limit; n++)
        {
            Assert.Equal((ulong)n, OffsetOf(await PublishAsync(node, n)));
        }

        var waiting = PublishAsync(node, Limit + 1).AsTask();

        Assert.False(waiting.IsCompleted);
        Assert.Equal((ulong)Limit, (await node.Broker.ReadHistoryAsync(Channel, null, 0, Policy)).Position.Offset); // not appended yet
        Assert.Equal(1, node.Metrics.PublishFanOutWaits);

        scheduler.RunAll();
        Assert.Equal((ulong)Limit + 1, OffsetOf(await waiting.WaitAsync(TimeSpan.FromSeconds(10))));
        scheduler.RunAll(); // the publication that waited, if the worker had already finished

        Assert.Equal(Enumerable.Range(1, Limit + 1).Select(n => (ulong)n), PushedOffsets(session));
    }

    [Fact]
    public async Task WithPublishBackpressure_BacklogAtTwiceTheLimit_IsDropped_AndItsSubscribersAreClosedWith4004ToRecover()
    {
        const int Limit = 16;
        var (node, scheduler) = await StartAsync(Limit, backpressure: true);
        await using var _ = node;
        var (session, transport) = await SubscribeAsync(node);

        // Publications this node cannot slow down (as from another node through the broker) pass the limit.
        for (var n = 1; n <= 2 * Limit; n++)
        {
            await node.Broker.PublishAsync(Channel, """{"n":0}"""u8.ToArray(), null, Policy);
        }
        Assert.Equal(2 * Limit, node.DispatchBacklog);
        Assert.Equal(0, node.Metrics.DispatchOverflows);
        await node.Broker.PublishAsync(Channel, """{"n":0}"""u8.ToArray(), null, Policy);

        Assert.Equal(1, node.DispatchBacklog); // the backlog went; the newest publication stays queued
        Assert.Equal(1, node.Metrics.DispatchOverflows);

        scheduler.RunAll();

        Assert.Empty(PushedOffsets(session));
        Assert.Equal([CloseCodes.InsufficientState], transport.Closes);
    }

    [Fact]
    public async Task BeginShutdown_DropsTheBacklog_AndReleasesPublishersWaitingForRoom()
    {
        const int Limit = 16;
        var (node, scheduler) = await StartAsync(Limit, backpressure: true);
        await using var _ = node;
        var (session, _) = await SubscribeAsync(node);
        for (var n = 1; n <= Limit; n++)
        {
            await PublishAsync(node, n);
        }
        var waiting = PublishAsync(node, Limit + 1).AsTask();
        Assert.False(waiting.IsCompleted);

        node.BeginShutdown();

        Assert.Equal((ulong)Limit + 1, OffsetOf(await waiting.WaitAsync(TimeSpan.FromSeconds(10))));
        Assert.Equal(0, node.DispatchBacklog);
        scheduler.RunAll();
        Assert.Empty(PushedOffsets(session));
    }

    [Fact]
    public async Task FanOutOnTheThreadPool_RacingPublishersAndSubscribers_DeliversEveryOffsetOnceInOrder()
    {
        // Backpressure keeps eight publishers within the small backlog, so that every offset reaches every subscriber live.
        var options = new HeraldOptions { AllowAnonymous = true, MaxDispatchBacklog = 16, PublishBackpressure = true, MaxQueuedMessages = 100_000, MaxQueuedBytes = 1L << 30 };
        options.Namespaces["chat"] = new NamespaceOptions { HistorySize = 10_000, HistoryTtl = TimeSpan.Zero };
        await using var node = new HeraldNode(options, new MemoryBroker());
        await node.StartAsync();
        const int Publishers = 8, PerPublisher = 200, Total = Publishers * PerPublisher;
        var epoch = (await node.Broker.ReadHistoryAsync(Channel, null, 0, Policy)).Position.Epoch;
        var sessions = new ConcurrentBag<(ClientSession Session, Transport Transport)>();

        var publishing = Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                Assert.True((await PublishAsync(node, i)).TryGetValue(out _, out _));
            }
        })).ToList();
        var subscribing = Enumerable.Range(0, 4).Select(s => Task.Run(async () =>
        {
            for (var i = 0; i < 5; i++)
            {
                var transport = new Transport();
                var session = new ClientSession(node, transport);
                await session.HandleMessageAsync(SubscribeFromStart(epoch));
                sessions.Add((session, transport));
            }
        })).ToList();
        await Task.WhenAll(publishing.Concat(subscribing)).WaitAsync(TimeSpan.FromSeconds(30));

        foreach (var (session, transport) in sessions)
        {
            var seen = new List<ulong>();
            await Wait.UntilAsync(() =>
            {
                foreach (var message in Drain(session))
                {
                    if (message.TryGetProperty("push", out var push))
                    {
                        seen.Add(push.GetProperty("pub").GetProperty("offset").GetUInt64());
                    }
                    else if (message.GetProperty("id").GetInt32() == 2)
                    {
                        var result = message.GetProperty("result");
                        seen.AddRange(result.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
                    }
                }
                return seen.Count >= Total || !transport.Closes.IsEmpty;
            }, TimeSpan.FromSeconds(20), "every offset reaches every subscriber");
            Assert.Empty(transport.Closes);
            Assert.Equal(Enumerable.Range(1, Total).Select(n => (ulong)n), seen);
        }
    }

    [Fact]
    public async Task HandOffAndWorker_AllocateNothingPerPublication_BeyondTheKnownHead()
    {
        var (node, scheduler) = await StartAsync();
        await using var _ = node;
        const string Quiet = "chat:quiet"; // no node receives it: what the log alone allocates per publication
        using var poll = await node.ParkAsync([Channel], CancellationToken.None); // the node receives Channel, no subscriber
        var payload = """{"n":1}"""u8.ToArray();

        long PerPublication(string channel)
        {
            const int Publications = 200;
            for (var warm = 0; warm < Publications; warm++) // grows the log's ring and the dispatcher's queue once
            {
                Completed(node.Broker.PublishAsync(channel, payload, null, Policy));
                scheduler.RunAll();
            }
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < Publications; i++)
            {
                Completed(node.Broker.PublishAsync(channel, payload, null, Policy));
                scheduler.RunAll();
            }
            return (GC.GetAllocatedBytesForCurrentThread() - before) / Publications;
        }

        // The memory broker answers synchronously; awaiting would let allocations of the async machinery in.
        static void Completed(ValueTask<StreamPosition> publish) => Assert.True(publish.IsCompletedSuccessfully && publish.Result.Offset > 0);

        var quiet = PerPublication(Quiet);
        var dispatched = PerPublication(Channel);
        // The node's known head is an immutable (offset, epoch) record swapped in per publication (32 bytes, as before the
        // dispatcher); the queue and the worker add nothing once the queue has grown.
        const int KnownHead = 32;
        Assert.True(dispatched - quiet <= KnownHead, $"{quiet} bytes per publication in the log alone, {dispatched} with the hand-off and the worker");
    }

    [Fact]
    public void MaxDispatchBacklog_DefaultsTo1000_WithoutBackpressure_AndOutsideItsRangeIsRefusedByName()
    {
        Assert.Equal(1000, new HeraldOptions().MaxDispatchBacklog);
        Assert.False(new HeraldOptions().PublishBackpressure);
        Assert.Empty(Problems(new HeraldOptions()));
        Assert.Empty(Problems(new HeraldOptions { MaxDispatchBacklog = 16 }));
        Assert.Contains(nameof(HeraldOptions.MaxDispatchBacklog), Problems(new HeraldOptions { MaxDispatchBacklog = 15 }));
        Assert.Contains(nameof(HeraldOptions.MaxDispatchBacklog), Problems(new HeraldOptions { MaxDispatchBacklog = 1_000_001 }));

        static List<string> Problems(HeraldOptions options)
        {
            var results = new List<ValidationResult>();
            Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
            return [.. results.SelectMany(r => r.MemberNames)];
        }
    }
}
