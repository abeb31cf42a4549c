using Herald.Client;
using Herald.Client.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Herald.Redis.Tests;

/// <summary>
/// The clients' chaos test (<see cref="ChaosDriver"/>, as in <c>Herald.Client.Tests.ChaosTests</c>) against two Herald
/// nodes on one real redis-server: clients start spread over both nodes and, through
/// <see cref="HeraldClientOptions.BaseUris"/>, every reconnect and transport switch moves them to the other node, where
/// they resume with <c>since</c> from the channel's history in Redis. Publishers publish through both nodes.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RedisChaosTests(RedisServerFixture redis, ITestOutputHelper output)
{
    // Run it alone with: dotnet test tests/Herald.Redis.Tests -c Release --filter FullyQualifiedName~RedisChaos --logger "console;verbosity=normal"
    [Fact]
    public async Task Chaos_TwoNodesOnRedis_ClientsMovingBetweenNodes_EveryClientGetsEveryOffsetOnceInOrder()
    {
        var prefix = "chaos-" + Guid.NewGuid().ToString("N")[..12];
        var live = new ChaosDriver.LiveRequests();
        Task<TestServer> StartNodeAsync() => TestServer.StartAsync(
            o => o.Namespaces["chat"] = new NamespaceOptions { HistorySize = 50_000, HistoryTtl = TimeSpan.FromMinutes(30), AllowClientPublish = true },
            configureApp: live.Install,
            configureServices: services => services.AddHeraldRedis(o =>
            {
                o.Configuration = redis.Configuration;
                o.Prefix = prefix;
            }));
        await using var a = await StartNodeAsync();
        await using var b = await StartNodeAsync();
        TestServer[] nodes = [a, b];

        var driver = new ChaosDriver(line =>
        {
            output.WriteLine(line);
            Console.WriteLine(line);
        })
        {
            // Sized for CI on 2 cores: every publication crosses Redis, and the run stays well under half a minute.
            Total = 6_000,
            ClientCount = 12,
        };
        await driver.RunAsync(nodes, live, i => Clients.Options(a) with
        {
            // BaseUris wins over BaseUri (A): half start on A, half on B, and each attempt after that goes to the other node.
            BaseUris = i % 2 == 0 ? [a.BaseUri, b.BaseUri] : [b.BaseUri, a.BaseUri],
        }, seed: 11_006);

        // Both nodes took reconnects, not only the clients' first connections (12 in all, 6 each); without BaseUris every
        // attempt would have gone to A.
        Assert.True(live.AttemptsOn(a.Port) > 6 && live.AttemptsOn(b.Port) > 6,
            $"connection attempts: A {live.AttemptsOn(a.Port)}, B {live.AttemptsOn(b.Port)}");
    }
}
