using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Herald.Brokers;
using Herald.Protocol;
using StackExchange.Redis;
using StreamPosition = Herald.Protocol.StreamPosition;

namespace Herald.Redis.Tests;

/// <summary>
/// No silent loss, at the broker level: a node whose Pub/Sub connection drops, or whose Pub/Sub message is lost, still
/// hands the node every offset once and in order (filled from the Stream); a Redis that lost its data starts a new
/// epoch; a Redis that kept it goes on in the same epoch, and refused (never dropped) what came while it was down.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RedisGapTests(RedisServerFixture redis) : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private static readonly HistoryPolicy KeepAll = new(100_000, TimeSpan.Zero);
    /// <summary>Long enough that the periodic check never runs during a test that must show another path fills the gap.</summary>
    private static readonly TimeSpan NoPeriodicCheck = TimeSpan.FromHours(1);

    private readonly string _prefix = "gaps-" + Guid.NewGuid().ToString("N")[..12];
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }
    }

    private async Task<(RedisBroker Broker, Recorder Received)> StartNodeAsync(ConnectionMultiplexer connection, TimeSpan positionCheck)
    {
        var broker = new RedisBroker(connection, new RedisBrokerOptions { Prefix = _prefix, PositionCheckInterval = positionCheck });
        _owned.Add(broker);
        var recorder = new Recorder();
        await broker.StartAsync(recorder);
        return (broker, recorder);
    }

    private async Task<ConnectionMultiplexer> ConnectAsync(Func<Task<ConnectionMultiplexer>> connect)
    {
        var connection = await connect();
        _owned.Add(connection);
        return connection;
    }

    /// <summary>
    /// Appends a publication to the channel's log exactly as a publish does, but publishes it on a Pub/Sub channel
    /// nobody listens to: a publication that never reached the node.
    /// </summary>
    private async Task<ulong> PublishLostAsync(ConnectionMultiplexer connection, string channel, string data)
    {
        var keys = new RedisKeys(_prefix);
        var result = (RedisResult[])(await connection.GetDatabase().ScriptEvaluateAsync(
            RedisScripts.Publish,
            [keys.Meta(channel), keys.Stream(channel)],
            [Encoding.UTF8.GetBytes(data), "0", "", "", KeepAll.Size, 0, "never-used", $"{_prefix}:nobody-listens"]))!;
        return (ulong)result[0];
    }

    private static byte[] Data(int n) => Encoding.UTF8.GetBytes($$"""{"n":{{n}}}""");

    [Fact]
    public async Task PubSubConnectionKilled_WhilePublishersRun_NodeGetsEveryOffsetOnceInOrder()
    {
        const string Channel = "chat:killed";
        var admin = await ConnectAsync(() => ConnectionMultiplexer.ConnectAsync(redis.Configuration + ",allowAdmin=true"));
        var (node, received) = await StartNodeAsync(await ConnectAsync(redis.ConnectAsync), NoPeriodicCheck);
        var (publisher, _) = await StartNodeAsync(await ConnectAsync(redis.ConnectAsync), NoPeriodicCheck);
        await node.SubscribeAsync(Channel);

        using var stop = new CancellationTokenSource();
        var published = 0L;
        async Task PublishAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                await publisher.PublishAsync(Channel, Data(1), null, KeepAll);
                Interlocked.Increment(ref published);
            }
        }
        var publishers = new[] { Task.Run(PublishAsync), Task.Run(PublishAsync) };

        var server = admin.GetServer(admin.GetEndPoints()[0]);
        for (var kill = 1; kill <= 3; kill++)
        {
            var before = received.Count(Channel);
            await Wait.UntilAsync(() => received.Count(Channel) >= before + 200, Deadline, $"200 more publications before kill {kill}");
            var killed = (long)await server.ExecuteAsync("CLIENT", "KILL", "TYPE", "pubsub");
            Assert.True(killed >= 1, $"CLIENT KILL TYPE pubsub killed {killed} connections");
        }
        // Live again: more publications arrive by Pub/Sub after the last kill.
        var afterKills = received.Count(Channel);
        await Wait.UntilAsync(() => received.Count(Channel) >= afterKills + 200, Deadline, "200 publications after the last kill");
        await stop.CancelAsync();
        await Task.WhenAll(publishers);

        var head = (await publisher.ReadHistoryAsync(Channel, null, 0, KeepAll)).Position.Offset;
        Assert.Equal((ulong)Interlocked.Read(ref published), head);
        // The last publication may have been made while nothing followed it; one more fences it.
        var fence = await publisher.PublishAsync(Channel, Data(0), null, KeepAll);
        await Wait.UntilAsync(() => received.Count(Channel) >= (int)fence.Offset, Deadline,
            $"offset {fence.Offset} at the node (it has {received.Count(Channel)})");

        var offsets = received.OffsetsOf(Channel);
        Assert.Equal(Enumerable.Range(1, (int)fence.Offset).Select(i => (ulong)i), offsets);
        Assert.Single(received.Of(Channel).Select(d => d.Epoch).Distinct());
        // The kills opened gaps, and they were filled from history rather than never having happened.
        Assert.True(node.FilledCount > 0, "no publication was missed by Pub/Sub: the kills did not test gap filling");
    }

    [Fact]
    public async Task PublicationLostOnTheWay_IsDeliveredBeforeTheNextOne()
    {
        const string Channel = "chat:lost";
        var connection = await ConnectAsync(redis.ConnectAsync);
        var (node, received) = await StartNodeAsync(await ConnectAsync(redis.ConnectAsync), NoPeriodicCheck);
        var (publisher, _) = await StartNodeAsync(connection, NoPeriodicCheck);
        await node.SubscribeAsync(Channel);

        await publisher.PublishAsync(Channel, Data(1), null, KeepAll);
        await Wait.UntilAsync(() => received.Count(Channel) == 1, Deadline, "publication 1");
        Assert.Equal(2UL, await PublishLostAsync(connection, Channel, """{"n":2}"""));
        Assert.Equal(3UL, (await publisher.PublishAsync(Channel, Data(3), null, KeepAll)).Offset);

        await Wait.UntilAsync(() => received.Count(Channel) >= 3, Deadline, "publications 2 and 3");
        var deliveries = received.Of(Channel);
        Assert.Equal([1UL, 2UL, 3UL], deliveries.Select(d => d.Publication.Offset));
        Assert.Equal(["""{"n":1}""", """{"n":2}""", """{"n":3}"""], deliveries.Select(d => Encoding.UTF8.GetString(d.Publication.Data.Span)));
        Assert.Equal(1, node.FilledCount);
    }

    [Fact]
    public async Task TrailingLostPublications_OnSeveralChannels_AreFilledByThePeriodicCheckWithinTwoIntervals()
    {
        var interval = TimeSpan.FromMilliseconds(200);
        string[] channels = ["chat:trailing-a", "chat:trailing-b", "chat:trailing-c"];
        var connection = await ConnectAsync(redis.ConnectAsync);
        var (node, received) = await StartNodeAsync(await ConnectAsync(redis.ConnectAsync), interval);
        var (publisher, _) = await StartNodeAsync(connection, NoPeriodicCheck);
        foreach (var channel in channels)
        {
            await node.SubscribeAsync(channel);
            await publisher.PublishAsync(channel, Data(1), null, KeepAll);
        }
        await Wait.UntilAsync(() => channels.All(c => received.Count(c) == 1), Deadline, "publication 1 of every channel");

        var clock = Stopwatch.StartNew();
        foreach (var channel in channels)
        {
            Assert.Equal(2UL, await PublishLostAsync(connection, channel, """{"n":2}"""));
        }
        // No later publication reveals the gap: only the check can.
        await Wait.UntilAsync(() => channels.All(c => received.Count(c) == 2), Deadline, "the lost publication 2 of every channel");
        var took = clock.Elapsed;

        foreach (var channel in channels)
        {
            Assert.Equal([1UL, 2UL], received.OffsetsOf(channel));
        }
        // Two intervals, plus room for a busy machine; the point is "the next check or so", not "some day".
        Assert.True(took < interval * 2 + TimeSpan.FromSeconds(1), $"the periodic check took {took.TotalMilliseconds:0} ms to fill the gaps");
    }

    [Fact]
    public async Task HeadLowerThanDelivered_RedisLostWrites_IsANewEpochNotARewind()
    {
        const string Channel = "chat:rewound";
        var connection = await ConnectAsync(redis.ConnectAsync);
        var (node, received) = await StartNodeAsync(await ConnectAsync(redis.ConnectAsync), TimeSpan.FromMilliseconds(200));
        var (publisher, _) = await StartNodeAsync(connection, NoPeriodicCheck);
        await node.SubscribeAsync(Channel);
        StreamPosition last = default;
        for (var i = 1; i <= 5; i++)
        {
            last = await publisher.PublishAsync(Channel, Data(i), null, KeepAll);
        }
        await Wait.UntilAsync(() => received.Count(Channel) == 5, Deadline, "publications 1 to 5");

        // A failover to a replica that had not yet received 4 and 5.
        var keys = new RedisKeys(_prefix);
        var database = connection.GetDatabase();
        await database.StreamDeleteAsync(keys.Stream(Channel), ["4-0", "5-0"]);
        await database.ExecuteAsync("XSETID", keys.Stream(Channel), "3-0");
        await database.HashSetAsync(keys.Meta(Channel), "head", 3);
        StreamPosition read = default;
        await WaitUntilAsync(async () => (read = (await publisher.ReadHistoryAsync(Channel, null, 0, KeepAll)).Position).Epoch != last.Epoch,
            "the node to give the channel a new epoch");
        Assert.Equal(3UL, read.Offset);

        var next = await publisher.PublishAsync(Channel, Data(6), null, KeepAll);
        Assert.Equal(new StreamPosition(4, read.Epoch), next);
        await Wait.UntilAsync(() => received.Count(Channel) == 6, Deadline, "the new epoch's publication");
        var newest = received.Of(Channel)[^1];
        Assert.Equal((4UL, read.Epoch), (newest.Publication.Offset, newest.Epoch));
    }

    [Fact]
    public async Task RedisRestartedWithoutPersistence_NextPublishStartsANewEpoch_AndTheNodeDeliversIt()
    {
        const string Channel = "chat:amnesia";
        using var server = new RedisServer(persistent: false);
        await server.StartAsync();
        // The check on reconnection may run before the node's subscription is back and the publish lands between the
        // two; the periodic check is the net under that, so it runs here too.
        var (node, received) = await StartNodeAsync(await ConnectAsync(() => server.ConnectAsync(ShortTimeouts)), TimeSpan.FromMilliseconds(200));
        var (publisher, _) = await StartNodeAsync(await ConnectAsync(() => server.ConnectAsync(ShortTimeouts)), NoPeriodicCheck);
        await node.SubscribeAsync(Channel);
        var before = await publisher.PublishAsync(Channel, Data(1), null, KeepAll);
        await publisher.PublishAsync(Channel, Data(2), null, KeepAll);
        await Wait.UntilAsync(() => received.Count(Channel) == 2, Deadline, "publications 1 and 2");

        server.Stop();
        await server.StartAsync();

        var after = await PublishWhenBackAsync(publisher, Channel, Data(1));
        Assert.NotEqual(before.Epoch, after.Epoch);
        Assert.Equal(1UL, after.Offset);
        var read = await publisher.ReadHistoryAsync(Channel, null, 10, KeepAll);
        Assert.Equal(after, read.Position);

        // The node hears of the new epoch: by Pub/Sub, or from history when its connection came back after the publish.
        await Wait.UntilAsync(() => received.Of(Channel).Any(d => d.Epoch == after.Epoch), Deadline, "the new epoch at the node");
        Assert.Equal(2UL, (await publisher.PublishAsync(Channel, Data(2), null, KeepAll)).Offset);
        await Wait.UntilAsync(() => received.Of(Channel).Count(d => d.Epoch == after.Epoch) == 2, Deadline, "publication 2 of the new epoch");
        Assert.Equal([1UL, 2UL], received.Of(Channel).Where(d => d.Epoch == after.Epoch).Select(d => d.Publication.Offset));
        Assert.Equal([1UL, 2UL], received.Of(Channel).Where(d => d.Epoch == before.Epoch).Select(d => d.Publication.Offset));
    }

    [Fact]
    public async Task RedisRestartedWithPersistence_OffsetsGoOnInTheSameEpoch_AndPublishesWhileDownWereRefused()
    {
        const string Channel = "chat:durable";
        using var server = new RedisServer(persistent: true);
        await server.StartAsync();
        var (node, received) = await StartNodeAsync(await ConnectAsync(() => server.ConnectAsync(ShortTimeouts)), TimeSpan.FromMilliseconds(200));
        var (publisher, _) = await StartNodeAsync(await ConnectAsync(() => server.ConnectAsync(ShortTimeouts)), NoPeriodicCheck);
        await node.SubscribeAsync(Channel);
        StreamPosition last = default;
        for (var i = 1; i <= 5; i++)
        {
            last = await publisher.PublishAsync(Channel, Data(i), null, KeepAll);
        }
        await Wait.UntilAsync(() => received.Count(Channel) == 5, Deadline, "publications 1 to 5");

        server.Stop();
        for (var i = 0; i < 3; i++)
        {
            await Assert.ThrowsAsync<BrokerUnavailableException>(async () => await publisher.PublishAsync(Channel, Data(-1), null, KeepAll));
        }
        await server.StartAsync();

        // Nothing refused was stored later behind our back: the next offset is 6, in the same epoch.
        var next = await PublishWhenBackAsync(publisher, Channel, Data(6));
        Assert.Equal(new StreamPosition(6, last.Epoch), next);
        await Wait.UntilAsync(() => received.Count(Channel) == 6, Deadline, "publication 6 at the node");
        Assert.Equal(Enumerable.Range(1, 6).Select(i => (ulong)i), received.OffsetsOf(Channel));
        Assert.All(received.Of(Channel), d => Assert.Equal(last.Epoch, d.Epoch));
        var history = await publisher.ReadHistoryAsync(Channel, 0, 100, KeepAll);
        Assert.Equal(next, history.Position);
        Assert.Equal(["""{"n":1}""", """{"n":2}""", """{"n":3}""", """{"n":4}""", """{"n":5}""", """{"n":6}"""],
            history.Publications.Select(p => Encoding.UTF8.GetString(p.Data.Span)));
    }

    /// <summary>Timeouts short enough that a call to a stopped Redis fails fast.</summary>
    private const string ShortTimeouts = "connectTimeout=500,asyncTimeout=1000,syncTimeout=1000";

    /// <summary>Publishes once Redis answers again; an attempt refused as unavailable is retried.</summary>
    private static async Task<StreamPosition> PublishWhenBackAsync(IBroker broker, string channel, byte[] data)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            try
            {
                return await broker.PublishAsync(channel, data, null, KeepAll);
            }
            catch (BrokerUnavailableException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {Deadline.TotalSeconds} s waiting for {what}");
            }
            await Task.Delay(20);
        }
    }

    /// <summary>Records every delivery in arrival order.</summary>
    private sealed class Recorder : IBrokerEventHandler
    {
        private readonly ConcurrentQueue<(string Channel, Publication Publication, string Epoch)> _seen = new();

        public void HandlePublication(string channel, Publication publication, string epoch) => _seen.Enqueue((channel, publication, epoch));

        public IReadOnlyList<(string Channel, Publication Publication, string Epoch)> Of(string channel) => [.. _seen.Where(d => d.Channel == channel)];

        public IReadOnlyList<ulong> OffsetsOf(string channel) => [.. _seen.Where(d => d.Channel == channel).Select(d => d.Publication.Offset)];

        public int Count(string channel) => _seen.Count(d => d.Channel == channel);
    }
}
