using System.Collections.Concurrent;
using System.Net;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Tests.Conformance;
using StackExchange.Redis;
using ClientInfo = Herald.Protocol.ClientInfo;

namespace Herald.Redis.Tests;

/// <summary>
/// The broker contract, checked on a local three-master Redis Cluster: each node is its own <see cref="RedisBroker"/>
/// with its own connection, and the suite's channels land on different masters.
/// </summary>
[Collection(RedisClusterCollection.Name)]
public sealed class RedisClusterBrokerConformanceTests(RedisClusterFixture cluster) : BrokerConformanceTests
{
    private readonly List<ConnectionMultiplexer> _connections = [];

    /// <summary>Redis keeps time by its own clock, so the TTL test runs on real time with a short TTL.</summary>
    protected override TimeSpan HistoryTtl => TimeSpan.FromSeconds(2.4);

    protected override async Task<IBroker[]> CreateNodesAsync(int count, TimeProvider? time)
    {
        var nodes = new IBroker[count];
        for (var i = 0; i < count; i++)
        {
            var connection = await cluster.ConnectAsync();
            _connections.Add(connection);
            nodes[i] = new RedisBroker(connection, new RedisBrokerOptions { Prefix = "conformance" });
        }
        return nodes;
    }

    protected override Task AdvanceTimeAsync(ManualTime time, TimeSpan by) => Task.Delay(by);

    protected override async ValueTask DisposeBackendAsync()
    {
        foreach (var connection in _connections)
        {
            await connection.DisposeAsync();
        }
    }
}

/// <summary>On a Redis Cluster the broker fans out by sharded Pub/Sub, on the shard that holds the channel.</summary>
[Collection(RedisClusterCollection.Name)]
public sealed class RedisClusterTests(RedisClusterFixture cluster)
{
    private static readonly HistoryPolicy KeepAll = new(10_000, TimeSpan.Zero);

    [Fact]
    public async Task Deliver_ChannelsOnEveryMaster_ReachEachNodeInOrderByShardedPubSub()
    {
        const int PerChannel = 150;
        var options = new RedisBrokerOptions { Prefix = "sharded-" + Guid.NewGuid().ToString("N")[..8], PositionCheckInterval = TimeSpan.FromMinutes(10) };
        var keys = new RedisKeys(options.Prefix);
        await using var connectionA = await cluster.ConnectAsync();
        await using var connectionB = await cluster.ConnectAsync();
        await using var admin = await cluster.ConnectAsync("allowAdmin=true");
        var topology = (await admin.GetServers()[0].ClusterNodesAsync())!;

        // One channel per master: their keys and sharded Pub/Sub channels are on three different shards.
        var channels = new Dictionary<EndPoint, string>();
        for (var i = 0; channels.Count < 3; i++)
        {
            var channel = $"room-{i}";
            var master = topology.GetBySlot(keys.Meta(channel))!.EndPoint!;
            Assert.Equal(master, topology.GetBySlot(keys.Stream(channel))!.EndPoint);
            Assert.Equal(master, topology.GetBySlot((RedisKey)keys.PubSub(channel))!.EndPoint);
            channels.TryAdd(master, channel);
        }

        var a = new RedisBroker(connectionA, options);
        var b = new RedisBroker(connectionB, options);
        var received = new[] { new Received(), new Received() };
        await a.StartAsync(received[0]);
        await b.StartAsync(received[1]);
        try
        {
            Assert.True(a.UsesShardedPubSub);
            Assert.True(b.UsesShardedPubSub);
            foreach (var channel in channels.Values)
            {
                await a.SubscribeAsync(channel);
                await b.SubscribeAsync(channel);
            }

            // Both subscriptions are sharded ones, on the master that holds the channel; none is a classic one.
            foreach (var (master, channel) in channels)
            {
                var server = admin.GetServer(master);
                var sharded = (RedisResult[])(await server.ExecuteAsync("PUBSUB", "SHARDNUMSUB", keys.PubSub(channel)))!;
                Assert.Equal(2L, (long)sharded[1]);
                var classic = (RedisResult[])(await server.ExecuteAsync("PUBSUB", "NUMSUB", keys.PubSub(channel)))!;
                Assert.Equal(0L, (long)classic[1]);
            }

            // Both nodes publish on every channel at once.
            await Task.WhenAll(channels.Values.SelectMany(channel => new[] { a, b }.Select(async broker =>
            {
                for (var i = 0; i < PerChannel / 2; i++)
                {
                    await broker.PublishAsync(channel, "1"u8.ToArray(), null, KeepAll);
                }
            })));

            foreach (var node in received)
            {
                foreach (var channel in channels.Values)
                {
                    await Wait.UntilAsync(() => node.CountOf(channel) >= PerChannel, TimeSpan.FromSeconds(10), $"{PerChannel} deliveries of {channel}");
                    Assert.Equal(Enumerable.Range(1, PerChannel).Select(i => (ulong)i), node.OffsetsOf(channel));
                }
            }
            // Everything came by Pub/Sub: nothing was missing, so nothing was read from history.
            Assert.Equal(0, a.FilledCount);
            Assert.Equal(0, b.FilledCount);
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }

    [Fact]
    public async Task Presence_MembersOfNodesOnOtherSlotsAndLeases_AreListedWithoutCrossSlotCommands()
    {
        var prefix = "presence-" + Guid.NewGuid().ToString("N")[..8];
        var keys = new RedisKeys(prefix);
        await using var connection = await cluster.ConnectAsync();
        await using var admin = await cluster.ConnectAsync("allowAdmin=true");
        var topology = (await admin.GetServers()[0].ClusterNodesAsync())!;
        await using var store = new RedisPresenceStore(connection, new RedisBrokerOptions { Prefix = prefix }, new HeraldOptions());
        const string Channel = "chat:room";
        var nodes = Enumerable.Range(0, 6).Select(i => $"node-{i}").ToArray();
        // The heartbeats of these nodes sit on more than one master, and not all on the channel's.
        Assert.True(nodes.Select(n => topology.GetBySlot(keys.Node(n))!.EndPoint).Distinct().Count() > 1);

        await store.RefreshNodeAsync("dying", TimeSpan.FromSeconds(1));
        await store.AddAsync(Channel, new ClientInfo("dan", "dan-1"), "dying");
        foreach (var node in nodes)
        {
            await store.RefreshNodeAsync(node, TimeSpan.FromMinutes(1));
            await store.AddAsync(Channel, new ClientInfo($"u-{node}", $"c-{node}"), node);
        }
        Assert.True(await store.TouchLeaseAsync(Channel, "poll-1", "pat", null, TimeSpan.FromMinutes(1)));

        string[] expected = [.. nodes.Select(n => $"c-{n}"), "poll-1"];
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        string[] listed;
        while (!(listed = [.. (await store.ListAsync(Channel)).Select(c => c.Client).Order(StringComparer.Ordinal)]).SequenceEqual(expected.Order(StringComparer.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < deadline, $"listed [{string.Join(", ", listed)}]");
            await Task.Delay(100);
        }
        await store.EndLeaseAsync(Channel, "poll-1", "pat");
        await store.RemoveAsync(Channel, "c-node-0");
        Assert.Equal(nodes.Skip(1).Select(n => $"c-{n}"), (await store.ListAsync(Channel)).Select(c => c.Client).Order(StringComparer.Ordinal));
    }

    private sealed class Received : IBrokerEventHandler
    {
        private readonly ConcurrentDictionary<string, ConcurrentQueue<ulong>> _offsets = new(StringComparer.Ordinal);

        public void HandlePublication(string channel, Publication publication, string epoch) =>
            _offsets.GetOrAdd(channel, _ => new()).Enqueue(publication.Offset);

        public int CountOf(string channel) => _offsets.TryGetValue(channel, out var offsets) ? offsets.Count : 0;

        public IReadOnlyList<ulong> OffsetsOf(string channel) => _offsets.TryGetValue(channel, out var offsets) ? [.. offsets] : [];
    }
}
