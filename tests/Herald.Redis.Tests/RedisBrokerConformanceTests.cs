using Herald.Brokers;
using Herald.Tests.Conformance;
using StackExchange.Redis;

namespace Herald.Redis.Tests;

/// <summary>
/// The broker contract, checked on Redis: each node is its own <see cref="RedisBroker"/> with its own connection, all on
/// the collection's redis-server, as separate processes would be.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RedisBrokerConformanceTests(RedisServerFixture redis) : BrokerConformanceTests
{
    private readonly List<ConnectionMultiplexer> _connections = [];

    /// <summary>Redis keeps time by its own clock, so the TTL test runs on real time with a short TTL.</summary>
    protected override TimeSpan HistoryTtl => TimeSpan.FromSeconds(2.4);

    protected override async Task<IBroker[]> CreateNodesAsync(int count, TimeProvider? time)
    {
        var nodes = new IBroker[count];
        for (var i = 0; i < count; i++)
        {
            var connection = await redis.ConnectAsync();
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
