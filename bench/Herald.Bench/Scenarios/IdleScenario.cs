using System.Diagnostics;
using System.Globalization;
using System.Net;
using Herald.Bench.Clients;
using Herald.Bench.Measurement;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>
/// (c) idle: N WebSocket subscribers that receive nothing, and the server's resident memory per connection. A
/// process here may hold at most 20,000 open files, so the connections are held by agent processes of at most
/// <see cref="Agent.PerAgent"/> each, every agent on its own loopback source addresses (127.0.0.x).
/// </summary>
internal static class IdleScenario
{
        private const string Channel = "idle";

    public static async Task<RunResult> RunAsync(BenchSystem system, int clients, Sizes sizes, BenchOptions options, CancellationToken cancellationToken)
    {
        await using var session = await Session.StartAsync(system, options, "idle", cancellationToken).ConfigureAwait(false);
        // Baseline: the server has served one subscriber and one publication, so its code paths are loaded.
        await session.ConnectAsync(Transports.WebSocket, 1, _ => Channel, cancellationToken).ConfigureAwait(false);
        await session.WarmUpAsync([Channel], cancellationToken).ConfigureAwait(false);
        var (_, baseline) = await SettledMemoryAsync(session.Server, sizes.Step, cancellationToken).ConfigureAwait(false);

        var agents = new List<Agent>();
        try
        {
            for (var k = 0; k * Agent.PerAgent < clients; k++)
            {
                var count = Math.Min(Agent.PerAgent, clients - k * Agent.PerAgent);
                agents.Add(Agent.Start(system, [session.Server.Port], count, Channel, firstSource: 10 + k * 4, sources: 4));
            }
            var ready = await Task.WhenAll(agents.Select(a => a.ReadyAsync(cancellationToken))).ConfigureAwait(false);
            var connected = ready.Sum(r => r.Connected);
            var (loadedRss, loaded) = await SettledMemoryAsync(session.Server, sizes.Step, cancellationToken).ConfigureAwait(false);
            var alive = (await Task.WhenAll(agents.Select(a => a.AliveAsync(cancellationToken))).ConfigureAwait(false)).Sum();
            var error = ready.Select(r => r.Error).FirstOrDefault(e => !string.IsNullOrEmpty(e));
            if (alive < connected)
            {
                error ??= $"{connected - alive} connections dropped while idle";
            }
            return new RunResult
            {
                Connected = alive,
                ConnectFailures = clients - connected,
                Channels = 1,
                FirstError = error,
                BaselinePssMb = baseline / 1048576.0,
                LoadedPssMb = loaded / 1048576.0,
                LoadedRssMb = loadedRss / 1048576.0,
                KbPerConnection = alive > 0 ? (loaded - baseline) / 1024.0 / alive : 0,
                Limit = connected < clients ? $"connections refused or failed after {connected}" : "none (all connected)",
            };
        }
        finally
        {
            foreach (var agent in agents)
            {
                await agent.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>RSS and PSS after a settling time: the highest of a few samples, so a GC in between flatters no one.</summary>
    internal static async Task<(long Rss, long Pss)> SettledMemoryAsync(ServerProcess server, TimeSpan settle, CancellationToken cancellationToken)
    {
        await Task.Delay(settle, cancellationToken).ConfigureAwait(false);
        long rss = 0, pss = 0;
        for (var i = 0; i < 5; i++)
        {
            var sample = server.Sample();
            rss = Math.Max(rss, sample.RssBytes);
            pss = Math.Max(pss, sample.PssBytes);
            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
        }
        return (rss, pss);
    }
}
