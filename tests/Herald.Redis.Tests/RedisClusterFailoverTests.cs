using Herald.Client;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using Xunit.Abstractions;
using static Herald.Redis.Tests.RedisFaultTests;
using StreamPosition = Herald.Protocol.StreamPosition;

namespace Herald.Redis.Tests;

/// <summary>
/// A Redis Cluster failover end to end: a cluster of its own (three masters, one replica each), two Herald nodes on it,
/// WebSocket and polling clients on both; the master that holds the channel's slot is killed by its PID while the nodes
/// publish, its replica is promoted by the cluster, and the nodes go on through it. Every client ends with every offset
/// once, in order, or (if the replica lacked the last writes) a <c>recovered: false</c> naming the new epoch.
/// </summary>
[Collection(RedisClusterCollection.Name)]
public sealed class RedisClusterFailoverTests(ITestOutputHelper output)
{
    [Fact]
    public async Task MasterKilled_ReplicaPromoted_NodesGoOn_EveryClientGetsEveryOffsetOnceOrIsToldRecoveredFalse()
    {
        const string Channel = "chat:cluster-failover";
        var cluster = new RedisClusterFixture(replicasPerMaster: 1);
        await cluster.InitializeAsync();
        try
        {
            var configuration = cluster.Configuration.Replace("connectTimeout=2000,syncTimeout=5000,asyncTimeout=5000", "connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000", StringComparison.Ordinal);
            var prefix = "cluster-failover-" + Guid.NewGuid().ToString("N")[..8];
            Task<TestServer> StartNodeAsync() => TestServer.StartAsync(configureServices: services => services.AddHeraldRedis(o =>
            {
                o.Configuration = configuration;
                o.Prefix = prefix;
                o.PositionCheckInterval = TimeSpan.FromMilliseconds(200);
            }));
            await using var a = await StartNodeAsync();
            await using var b = await StartNodeAsync();
            await using var admin = await ConnectionMultiplexer.ConnectAsync(configuration);
            var keys = new RedisKeys(prefix);
            var watchers = await WatchAsync(a, b, Channel);
            try
            {
                for (var n = 1; n <= 50; n++)
                {
                    await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
                }
                var before = await HeadAsync(a, Channel);
                await WaitForAsync(watchers, before);

                // Kill the master of the channel's slot; the cluster promotes its replica after cluster-node-timeout (2 s).
                var master = (System.Net.IPEndPoint)admin.GetDatabase().IdentifyEndpoint(keys.Meta(Channel))!;
                var killedAt = DateTime.UtcNow;
                cluster.Kill(master.Port);

                // The nodes keep publishing: refused with 503 until the promotion is done and the client has followed it.
                StreamPosition head = default;
                for (var n = 51; n <= 80; n++)
                {
                    head = await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
                }
                output.WriteLine($"master {master.Port} killed; publishing went on after {(DateTime.UtcNow - killedAt).TotalSeconds:0.0} s; head {head}");
                var promoted = (System.Net.IPEndPoint)admin.GetDatabase().IdentifyEndpoint(keys.Meta(Channel))!;
                Assert.NotEqual(master.Port, promoted.Port);

                await WaitForAsync(watchers, head);
                foreach (var watcher in watchers)
                {
                    AssertOnceInOrderOrToldLost(watcher, firstEpoch: before.Epoch, head);
                }
                if (head.Epoch == before.Epoch)
                {
                    // The replica had every write: nothing lost, nobody told otherwise.
                    Assert.Equal(80UL, head.Offset);
                    Assert.All(watchers, w => Assert.Empty(w.Failures));
                }
            }
            finally
            {
                await DisposeAsync(watchers);
            }
        }
        finally
        {
            await cluster.DisposeAsync();
        }
    }
}
