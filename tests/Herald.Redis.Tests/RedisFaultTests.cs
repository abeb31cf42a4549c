using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Herald.Client;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using StreamPosition = Herald.Protocol.StreamPosition;
using Xunit.Abstractions;

namespace Herald.Redis.Tests;

/// <summary>
/// Redis failures end to end: two Herald nodes (real Kestrel) on a redis-server of the test's own, .NET clients on
/// WebSocket, long polling and short polling spread over both nodes, publishers on both nodes. Each test says what
/// failed, and checks that every client holds every offset exactly once, in order, or was told <c>recovered: false</c>
/// (<see cref="HeraldClient.RecoveryFailed"/>) where the log was lost, and goes on from the position it was given.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RedisFaultTests(ITestOutputHelper output)
{
    internal static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    internal static Task<TestServer> StartNodeAsync(int redisPort, string prefix) =>
        TestServer.StartAsync(configureServices: services => services.AddHeraldRedis(o =>
        {
            o.Configuration = $"127.0.0.1:{redisPort},abortConnect=false,connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000";
            o.Prefix = prefix;
            o.PositionCheckInterval = TimeSpan.FromMilliseconds(200);
        }));

    /// <summary>A WebSocket, a long poller and a short poller on A, a WebSocket and a long poller on B.</summary>
    internal static async Task<List<Watcher>> WatchAsync(TestServer a, TestServer b, string channel) =>
    [
        await Watcher.StartAsync(a, "A", HeraldTransport.WebSocket, channel),
        await Watcher.StartAsync(a, "A", HeraldTransport.LongPoll, channel),
        await Watcher.StartAsync(a, "A", HeraldTransport.ShortPoll, channel),
        await Watcher.StartAsync(b, "B", HeraldTransport.WebSocket, channel),
        await Watcher.StartAsync(b, "B", HeraldTransport.LongPoll, channel),
    ];

    [Fact]
    public async Task PubSubConnectionsKilled_WhilePublishersRunOnBothNodes_EveryClientGetsEveryOffsetOnceInOrder()
    {
        const string Channel = "chat:pubsub-killed";
        const int Total = 1_500;
        using var redis = new RedisServer(persistent: false);
        await redis.StartAsync();
        await using var admin = await redis.ConnectAsync("allowAdmin=true");
        var prefix = "pubsub-" + Guid.NewGuid().ToString("N")[..8];
        await using var a = await StartNodeAsync(redis.Port, prefix);
        await using var b = await StartNodeAsync(redis.Port, prefix);
        var watchers = await WatchAsync(a, b, Channel);
        try
        {
            var next = 0;
            var publishers = new[] { a, b }.Select(node => Task.Run(async () =>
            {
                int n;
                while ((n = Interlocked.Increment(ref next)) <= Total)
                {
                    await PublishAsync(node, Channel, n);
                }
            })).ToArray();
            var publishing = Task.WhenAll(publishers);

            // Kill every Pub/Sub connection (both nodes') again and again while the publishers run: what is published
            // until StackExchange.Redis has reconnected and resubscribed never arrives by Pub/Sub.
            var server = admin.GetServer(admin.GetEndPoints()[0]);
            var killed = 0;
            var rounds = 0;
            while (!publishing.IsCompleted)
            {
                killed += (int)await server.ExecuteAsync("CLIENT", "KILL", "TYPE", "pubsub");
                rounds++;
                await Task.WhenAny(publishing, Task.Delay(100)); // pacing, not synchronisation
            }
            await publishing;
            var head = await HeadAsync(a, Channel);
            Assert.Equal((ulong)Total, head.Offset);
            output.WriteLine($"{killed} Pub/Sub connections killed in {rounds} rounds while {Total} publications were made through two nodes");
            Assert.True(killed >= 4, $"only {killed} Pub/Sub connections were killed");

            await WaitForAsync(watchers, head);
            foreach (var watcher in watchers)
            {
                Assert.Empty(watcher.Failures);
                Assert.Equal(Enumerable.Range(1, Total).Select(i => new StreamPosition((ulong)i, head.Epoch)), watcher.Received.Select(p => p.Position));
            }
            // The nodes filled every hole from the Stream: no WebSocket had to be closed (4004) and recover.
            Assert.All(watchers.Where(w => w.Transport == HeraldTransport.WebSocket), w => Assert.Equal(1, w.Connects));
        }
        finally
        {
            await DisposeAsync(watchers);
        }
    }

    [Fact]
    public async Task FailoverToAReplicaThatLackedTheLastWrites_IsANewEpoch_ClientsAreToldRecoveredFalse_NeverOffsetsReused()
    {
        const string Channel = "chat:failover";
        using var primary = new RedisServer(persistent: false);
        await primary.StartAsync();
        using var replica = new RedisServer(persistent: false) { ExtraArguments = ["--replicaof", "127.0.0.1", primary.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)] };
        await replica.StartAsync();
        await using var toPrimary = await primary.ConnectAsync("allowAdmin=true");
        await using var toReplica = await replica.ConnectAsync("allowAdmin=true");
        var replicaServer = toReplica.GetServer(toReplica.GetEndPoints()[0]);
        await Wait.UntilAsync(() => (replicaServer.InfoRaw("replication") ?? "").Contains("master_link_status:up", StringComparison.Ordinal), Deadline, "the replica's link to the primary");

        // The nodes reach "the primary" through one address, which the failover moves to the replica.
        using var proxy = new TcpProxy(primary.Port);
        var prefix = "failover-" + Guid.NewGuid().ToString("N")[..8];
        await using var a = await StartNodeAsync(proxy.Port, prefix);
        await using var b = await StartNodeAsync(proxy.Port, prefix);
        var watchers = await WatchAsync(a, b, Channel);
        try
        {
            for (var n = 1; n <= 100; n++)
            {
                await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
            }
            // 1..100 are on the replica too. (Not WAIT on this connection: WAIT counts replicas that acknowledged this
            // connection's own writes, and it made none, so it would answer at once.)
            var keys = new RedisKeys(prefix);
            var replicaDb = toReplica.GetDatabase();
            await Wait.UntilAsync(() => (long?)replicaDb.HashGet(keys.Meta(Channel), "head") == 100, Deadline, "the replica to hold 1..100");
            var old = await HeadAsync(a, Channel);
            await WaitForAsync(watchers, old);

            // The replica stops replicating (promoted early, as an asynchronous failover that lost the link would):
            // 101..150 are accepted by the primary and delivered to every client, but the replica never gets them.
            await replicaServer.ExecuteAsync("REPLICAOF", "NO", "ONE");
            for (var n = 101; n <= 150; n++)
            {
                await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
            }
            var lost = await HeadAsync(a, Channel);
            Assert.Equal(new StreamPosition(150, old.Epoch), lost);
            await WaitForAsync(watchers, lost);

            // The failover: the address now leads to the replica, whose head is 100, and the primary is gone.
            proxy.SwitchTo(replica.Port);
            primary.Stop();

            // A node that delivered 150 finds the head at 100 in the same epoch and renews the epoch in Redis.
            await Wait.UntilAsync(() => replicaDb.HashGet(keys.Meta(Channel), "epoch") is { IsNull: false } epoch && epoch != old.Epoch, Deadline, "a node to renew the channel's epoch on the promoted replica");
            var renewed = (string)replicaDb.HashGet(keys.Meta(Channel), "epoch")!;
            Assert.Equal(100L, (long)replicaDb.HashGet(keys.Meta(Channel), "head"));

            for (var n = 1; n <= 20; n++)
            {
                var position = await PublishAsync(n % 2 == 0 ? a : b, Channel, 150 + n);
                // Offsets go on from what survived, in the new epoch: 101 of the old one is never given again.
                Assert.Equal(new StreamPosition((ulong)(100 + n), renewed), position);
            }
            var head = new StreamPosition(120, renewed);
            await WaitForAsync(watchers, head);
            foreach (var watcher in watchers)
            {
                AssertOnceInOrderOrToldLost(watcher, firstEpoch: old.Epoch, head);
                Assert.NotEmpty(watcher.Failures);
            }
        }
        finally
        {
            await DisposeAsync(watchers);
        }
    }

    [Fact]
    public async Task RedisRestartedWithoutPersistence_ClientsOnBothNodesAreToldRecoveredFalse_AndGoOnInTheNewEpoch()
    {
        const string Channel = "chat:restarted";
        using var redis = new RedisServer(persistent: false);
        await redis.StartAsync();
        var prefix = "restart-" + Guid.NewGuid().ToString("N")[..8];
        await using var a = await StartNodeAsync(redis.Port, prefix);
        await using var b = await StartNodeAsync(redis.Port, prefix);
        var watchers = await WatchAsync(a, b, Channel);
        try
        {
            for (var n = 1; n <= 50; n++)
            {
                await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
            }
            var old = await HeadAsync(a, Channel);
            await WaitForAsync(watchers, old);

            redis.Stop();
            await redis.StartAsync();

            StreamPosition head = default;
            for (var n = 1; n <= 20; n++)
            {
                head = await PublishAsync(n % 2 == 0 ? a : b, Channel, 50 + n);
            }
            Assert.NotEqual(old.Epoch, head.Epoch);
            Assert.Equal(20UL, head.Offset);
            await WaitForAsync(watchers, head);
            foreach (var watcher in watchers)
            {
                AssertOnceInOrderOrToldLost(watcher, firstEpoch: old.Epoch, head);
                Assert.NotEmpty(watcher.Failures);
            }
        }
        finally
        {
            await DisposeAsync(watchers);
        }
    }

    [Fact]
    public async Task RedisRestartedWithPersistence_WhilePublishersRetry_EveryClientGetsEveryOffsetOnceInTheSameEpoch()
    {
        const string Channel = "chat:persisted";
        using var redis = new RedisServer(persistent: true);
        await redis.StartAsync();
        var prefix = "persisted-" + Guid.NewGuid().ToString("N")[..8];
        await using var a = await StartNodeAsync(redis.Port, prefix);
        await using var b = await StartNodeAsync(redis.Port, prefix);
        var watchers = await WatchAsync(a, b, Channel);
        try
        {
            for (var n = 1; n <= 50; n++)
            {
                await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
            }
            var before = await HeadAsync(a, Channel);

            redis.Stop();
            // Publishes while it is down are refused (503) and retried; the first ones after it is back are accepted.
            var publishing = Task.Run(async () =>
            {
                for (var n = 51; n <= 100; n++)
                {
                    await PublishAsync(n % 2 == 0 ? a : b, Channel, n);
                }
            });
            await redis.StartAsync();
            await publishing.WaitAsync(Deadline);

            var head = await HeadAsync(a, Channel);
            Assert.Equal(new StreamPosition(100, before.Epoch), head);
            await WaitForAsync(watchers, head);
            foreach (var watcher in watchers)
            {
                Assert.Empty(watcher.Failures);
                Assert.Equal(Enumerable.Range(1, 100).Select(i => new StreamPosition((ulong)i, head.Epoch)), watcher.Received.Select(p => p.Position));
            }
        }
        finally
        {
            await DisposeAsync(watchers);
        }
    }

    /// <summary>
    /// The client got offsets 1, 2, … of <paramref name="firstEpoch"/> with no gap and no duplicate; every change of epoch
    /// came after a <c>recovered: false</c> naming the new epoch, and went on from the position that gave; it ends at
    /// <paramref name="head"/>.
    /// </summary>
    internal static void AssertOnceInOrderOrToldLost(Watcher watcher, string firstEpoch, StreamPosition head)
    {
        var received = watcher.Received;
        var failures = watcher.Failures;
        var epoch = firstEpoch;
        var expected = 1UL;
        var told = 0;
        foreach (var publication in received)
        {
            if (publication.Position.Epoch != epoch)
            {
                Assert.True(told < failures.Count, $"{watcher}: moved from epoch {epoch} to {publication.Position.Epoch} at offset {publication.Offset} without being told recovered:false");
                var failure = failures[told++];
                Assert.Equal(epoch, failure.Previous.Epoch);
                Assert.Equal(publication.Position.Epoch, failure.Position.Epoch);
                (epoch, expected) = (failure.Position.Epoch, failure.Position.Offset + 1);
            }
            Assert.True(publication.Offset == expected, $"{watcher}: expected offset {expected} of {epoch}, got {publication.Offset}");
            expected++;
        }
        // A recovered:false may be the last thing it learnt, when it came back at the head.
        var last = received.Count > 0 ? received[^1].Position : default;
        Assert.True(last == head || (told == failures.Count - 1 && failures[^1].Position == head),
            $"{watcher}: ends at {last}, told {told} of {failures.Count} recovered:false, expected {head}");
    }

    internal static async Task WaitForAsync(List<Watcher> watchers, StreamPosition head) =>
        await Wait.UntilAsync(() => watchers.All(w => w.Reached(head)), Deadline,
            $"every client to reach {head}: {string.Join("; ", watchers.Select(w => w.ToString()))}");

    internal static async Task DisposeAsync(List<Watcher> watchers)
    {
        foreach (var watcher in watchers)
        {
            await watcher.DisposeAsync();
        }
    }

    /// <summary>Publishes through the node's server API; while Redis cannot be reached (503), tries again.</summary>
    internal static async Task<StreamPosition> PublishAsync(TestServer node, string channel, int n)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            using var response = await node.Api.PostAsync("/api/publish", new StringContent($$$"""{"channel":"{{{channel}}}","data":{"n":{{{n}}}}}"""));
            var body = await response.Content.ReadAsStringAsync();
            if (response.StatusCode == HttpStatusCode.OK)
            {
                using var document = JsonDocument.Parse(body);
                return new StreamPosition(document.RootElement.GetProperty("offset").GetUInt64(), document.RootElement.GetProperty("epoch").GetString()!);
            }
            Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline, $"publish {n} answered {(int)response.StatusCode}: {body}");
            await Task.Delay(50); // Redis is coming back: retry pacing
        }
    }

    internal static async Task<StreamPosition> HeadAsync(TestServer node, string channel)
    {
        using var document = JsonDocument.Parse(await node.Api.GetStringAsync($"/api/channels/{channel}/history?limit=1"));
        return new StreamPosition(document.RootElement.GetProperty("offset").GetUInt64(), document.RootElement.GetProperty("epoch").GetString()!);
    }

    /// <summary>One client subscribed to the channel, recording what it receives and what it is told it lost.</summary>
    internal sealed class Watcher : IAsyncDisposable
    {
        private readonly List<ClientPublication> _received = [];
        private readonly ConcurrentQueue<HeraldRecoveryFailedEventArgs> _failures = new();
        private readonly Lock _gate = new();
        private readonly string _name;
        private HeraldClient _client = null!;
        private Task _reading = Task.CompletedTask;

        private int _connects;

        private Watcher(string name, HeraldTransport transport)
        {
            _name = name;
            Transport = transport;
        }

        public HeraldTransport Transport { get; }

        /// <summary>How many times it connected: 1 unless it lost its connection and reconnected.</summary>
        public int Connects => Volatile.Read(ref _connects);

        public IReadOnlyList<ClientPublication> Received
        {
            get
            {
                lock (_gate)
                {
                    return [.. _received];
                }
            }
        }

        public IReadOnlyList<HeraldRecoveryFailedEventArgs> Failures => [.. _failures];

        public static async Task<Watcher> StartAsync(TestServer node, string nodeName, HeraldTransport transport, string channel)
        {
            var watcher = new Watcher($"{transport} on {nodeName}", transport);
            watcher._client = new HeraldClient(Clients.Options(node, transport));
            watcher._client.StateChanged += (_, e) =>
            {
                if (e.State == HeraldConnectionState.Connected)
                {
                    Interlocked.Increment(ref watcher._connects);
                }
            };
            watcher._client.RecoveryFailed += (_, e) => watcher._failures.Enqueue(e);
            await watcher._client.ConnectAsync().AsTask().WaitAsync(Deadline);
            var subscription = await watcher._client.SubscribeAsync(channel).AsTask().WaitAsync(Deadline);
            watcher._reading = Task.Run(async () =>
            {
                await foreach (var publication in subscription)
                {
                    lock (watcher._gate)
                    {
                        watcher._received.Add(publication);
                    }
                }
            });
            return watcher;
        }

        /// <summary>Whether its last publication, or the last position it was told after a recovered:false, is <paramref name="head"/>.</summary>
        public bool Reached(StreamPosition head)
        {
            lock (_gate)
            {
                if (_received.Count > 0 && _received[^1].Position == head)
                {
                    return true;
                }
            }
            return _failures.LastOrDefault()?.Position == head;
        }

        public override string ToString()
        {
            lock (_gate)
            {
                return $"{_name} ({_client.State}): {_received.Count} publications, last {(_received.Count > 0 ? _received[^1].Position : "none")}, recovered:false {_failures.Count}, reader {(_reading.IsCompleted ? "ended" : "running")}";
            }
        }

        public async ValueTask DisposeAsync() => await _client.DisposeAsync();
    }
}
