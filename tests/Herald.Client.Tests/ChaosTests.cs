using Herald.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Herald.Client.Tests;

/// <summary>
/// 20 clients on one channel, on mixed transports, while 3 publishers publish 20,000 publications through the server
/// API; a seeded chaos driver drops clients at random (client socket aborted, poll request cancelled, server-side
/// abort of the connection) and switches transports, some of them with their connection attempt dropped. Every client
/// must end with offsets 1..20,000, once each, in order. The driver is <see cref="ChaosDriver"/>; the same chaos runs
/// against two nodes on Redis in <c>Herald.Redis.Tests</c> (<c>RedisChaosTests</c>).
/// </summary>
public sealed class ChaosTests(ITestOutputHelper output)
{
    // Run it alone with: dotnet test tests/Herald.Client.Tests -c Release --filter FullyQualifiedName~Chaos --logger "console;verbosity=normal"
    [Fact]
    public async Task Chaos_MixedTransports_RandomDropsAndSwitches_EveryClientGetsEveryOffsetOnceInOrder()
    {
        var live = new ChaosDriver.LiveRequests();
        await using var server = await TestServer.StartAsync(
            o => o.Namespaces["chat"] = new NamespaceOptions { HistorySize = 50_000, HistoryTtl = TimeSpan.FromMinutes(30), AllowClientPublish = true },
            configureApp: live.Install);
        var driver = new ChaosDriver(line =>
        {
            output.WriteLine(line);
            Console.WriteLine(line);
        });
        await driver.RunAsync([server], live, _ => Clients.Options(server), seed: 20_000);
    }
}
