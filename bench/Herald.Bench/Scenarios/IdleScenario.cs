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
/// <see cref="PerAgent"/> each, every agent on its own loopback source addresses (127.0.0.x).
/// </summary>
internal static class IdleScenario
{
    public const int PerAgent = 9_000;
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
            for (var k = 0; k * PerAgent < clients; k++)
            {
                var count = Math.Min(PerAgent, clients - k * PerAgent);
                agents.Add(Agent.Start(system, session.Server.Port, count, firstSource: 10 + k * 4, sources: 4));
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
    private static async Task<(long Rss, long Pss)> SettledMemoryAsync(ServerProcess server, TimeSpan settle, CancellationToken cancellationToken)
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

    /// <summary>The agent side: <c>herald-bench agent &lt;system&gt; &lt;port&gt; &lt;count&gt; &lt;first source&gt; &lt;sources&gt;</c>.</summary>
    public static async Task<int> AgentMainAsync(string[] args)
    {
        var system = BenchSystem.Find(args[0]);
        var port = int.Parse(args[1], CultureInfo.InvariantCulture);
        var count = int.Parse(args[2], CultureInfo.InvariantCulture);
        var first = int.Parse(args[3], CultureInfo.InvariantCulture);
        var sources = Enumerable.Range(first, int.Parse(args[4], CultureInfo.InvariantCulture)).Select(i => IPAddress.Parse($"127.0.0.{i}")).ToList();
        var stats = new Stats();
        using var context = new ClientContext(port, stats, sources);
        var clients = new List<BenchClient>();
        string? error = null;
        using (var gate = new SemaphoreSlim(64))
        {
            await Task.WhenAll(Enumerable.Range(0, count).Select(async _ =>
            {
                await gate.WaitAsync().ConfigureAwait(false);
                var client = system.CreateClient(Transports.WebSocket, context, Channel, TimeSpan.FromSeconds(1));
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                    await client.StartAsync(timeout.Token).ConfigureAwait(false);
                    lock (clients)
                    {
                        clients.Add(client);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref error, $"{e.GetType().Name}: {e.Message}", null);
                    await client.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    gate.Release();
                }
            })).ConfigureAwait(false);
        }
        Console.WriteLine($"ready {clients.Count} {error}");
        while (Console.ReadLine() is { } line)
        {
            if (line == "alive")
            {
                Console.WriteLine($"alive {clients.Count(c => !c.Failed)}");
            }
        }
        foreach (var client in clients)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }
        return 0;
    }

    private sealed class Agent : IAsyncDisposable
    {
        private readonly Process _process;

        private Agent(Process process) => _process = process;

        public static Agent Start(BenchSystem system, int port, int count, int firstSource, int sources)
        {
            var self = Environment.GetCommandLineArgs()[0];
            var start = new ProcessStartInfo(Environment.ProcessPath!)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            if (self.EndsWith(".dll", StringComparison.Ordinal))
            {
                start.ArgumentList.Add(self);
            }
            foreach (var a in new[] { "agent", system.Name, $"{port}", $"{count}", $"{firstSource}", $"{sources}" })
            {
                start.ArgumentList.Add(a);
            }
            return new Agent(Process.Start(start)!);
        }

        public async Task<(int Connected, string? Error)> ReadyAsync(CancellationToken cancellationToken)
        {
            var line = await _process.StandardOutput.ReadLineAsync(cancellationToken).AsTask().WaitAsync(TimeSpan.FromMinutes(5), cancellationToken).ConfigureAwait(false)
                       ?? throw new InvalidOperationException("agent exited before it was ready");
            var parts = line.Split(' ', 3);
            return (int.Parse(parts[1], CultureInfo.InvariantCulture), parts.Length > 2 ? parts[2] : null);
        }

        public async Task<int> AliveAsync(CancellationToken cancellationToken)
        {
            await _process.StandardInput.WriteLineAsync("alive").ConfigureAwait(false);
            await _process.StandardInput.FlushAsync(cancellationToken).ConfigureAwait(false);
            var line = await _process.StandardOutput.ReadLineAsync(cancellationToken).AsTask().WaitAsync(TimeSpan.FromMinutes(1), cancellationToken).ConfigureAwait(false);
            return line is null ? 0 : int.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                _process.StandardInput.Close();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
        }
    }
}
