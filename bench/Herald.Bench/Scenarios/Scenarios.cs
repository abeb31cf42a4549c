using System.Diagnostics;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>The sizes of one scenario run: <c>smoke</c> proves the harness in CI, <c>default</c> is what docs/benchmarks.md shows.</summary>
internal sealed record Sizes(int[] Clients, double[] Rates, TimeSpan Step, TimeSpan WarmLoad)
{
    /// <summary>The conflate scenario's slow subscribers and their stall (only that scenario has one).</summary>
    public ConflatePlan? Conflate { get; init; }

    public static Sizes For(string scenario, string size) => (scenario, size) switch
    {
        ("fanout", "smoke") => new([50], [5, 20], TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)),
        ("fanout", _) => new([1000, 5000, 10000], [1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000], TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(10)),
        ("channels", "smoke") => new([50], [50], TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1)),
        ("channels", _) => new([10000], [10000], TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10)),
        ("idle", "smoke") => new([100], [], TimeSpan.FromSeconds(1), TimeSpan.Zero),
        ("idle", _) => new([5000, 10000, 18000], [], TimeSpan.FromSeconds(3), TimeSpan.Zero),
        ("polling", "smoke") => new([50], [5], TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(1)),
        // 40 s of warm load: at 5 publications/s, .NET's tiering was still recompiling hot methods in bursts 10 s in, a
        // large share of the small CPU this scenario measures (bench/README.md, "Warm-up").
        ("polling", _) => new([1000], [5], TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(40)),
        // Clients in total over the three nodes. Steps of 5 s rather than fan-out's 3 s: Redis's CPU per publication
        // at the low rates is a few milliseconds a step, and needs the publications to be read at all.
        ("multinode", "smoke") => new([300], [5, 20], TimeSpan.FromSeconds(1), TimeSpan.Zero),
        ("multinode", _) => new([30000], [1, 2, 5, 10, 20, 50, 100, 200], TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10)),
        // Clients are the fast subscribers, the one rate is the publisher's for the step's length. A stalled reader
        // first fills the kernel's socket buffers (tcp_wmem's 4 MiB maximum on the server's side here, and the slow
        // reader's fixed receive buffer) before the server queues anything for it. The stall must outlast that and
        // then half the server's queue (Conflate) or all of it (plain: 4002). The queue keeps the server's default
        // 8 MiB, so a fast subscriber is only conflated if it falls 4 MiB behind (seconds here, even on a busy machine);
        // the payload is large enough that the stall fills it all within the run (the smoke size in seconds). And the
        // stall, with the catching up after it, stays well under Herald:KeepAliveTimeout (20 s): a ping the server
        // sends at its start waits behind the backlog, and one not answered in time drops the connection.
        ("conflate", "smoke") => new([10], [1000], TimeSpan.FromSeconds(6), TimeSpan.Zero)
        {
            Conflate = new(Slow: 2, PayloadBytes: 4096, MaxQueuedBytes: 8 << 20, StallAfter: TimeSpan.FromSeconds(1), StallFor: TimeSpan.FromSeconds(5)),
        },
        ("conflate", _) => new([200], [500], TimeSpan.FromSeconds(25), TimeSpan.FromSeconds(10))
        {
            Conflate = new(Slow: 5, PayloadBytes: 2560, MaxQueuedBytes: 8 << 20, StallAfter: TimeSpan.FromSeconds(5), StallFor: TimeSpan.FromSeconds(15)),
        },
        _ => throw new ArgumentException($"unknown scenario '{scenario}'"),
    };
}

/// <summary>The six scenarios of the benchmark.</summary>
internal static class ScenarioRunner
{
    public static readonly string[] Names = ["fanout", "channels", "idle", "polling", "multinode", "conflate"];

    public static async Task<List<RunResult>> RunAsync(string scenario, Sizes sizes, IReadOnlyList<BenchSystem> systems, BenchOptions options, CancellationToken cancellationToken)
    {
        var runs = new List<RunResult>();
        foreach (var system in systems)
        {
            if (scenario == "multinode" && !system.ScalesOutOnRedis)
            {
                Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {scenario}: {system.Name} skipped (no Redis scale-out mode here)");
                continue;
            }
            if (scenario == "conflate" && !system.HasLatestValueChannels)
            {
                Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {scenario}: {system.Name} skipped (no latest-value channels)");
                continue;
            }
            IEnumerable<(string Transport, int Clients, string? Mode)> plan = scenario switch
            {
                // (a) fan-out over WebSocket at every size, and over each other transport a system serves at the
                // smallest size (latency against load per transport); (b) many channels and (c) idle over WebSocket.
                "fanout" => sizes.Clients.Select(n => (Transports.WebSocket, n, (string?)null))
                    .Concat(system.Transports.Where(t => t != Transports.WebSocket).Select(t => (t, sizes.Clients.Min(), (string?)null))),
                "channels" or "idle" or "multinode" => sizes.Clients.Select(n => (Transports.WebSocket, n, (string?)null)),
                // (d) the same workload over every transport each system serves.
                "polling" => system.Transports.SelectMany(t => sizes.Clients.Select(n => (t, n, (string?)null))),
                // (f) the same run in a namespace with Conflate and in one without.
                "conflate" => sizes.Clients.SelectMany(n => ConflateScenario.Modes.Select(m => (Transports.WebSocket, n, (string?)m))),
                _ => throw new ArgumentException(scenario),
            };
            foreach (var (transport, clients, mode) in plan.Where(p => options.OnlyTransports.Count == 0 || options.OnlyTransports.Contains(p.Transport)))
            {
                Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {scenario}: {system.Name} {transport} x{clients}{(mode is null ? "" : $" ({mode})")}");
                var clock = Stopwatch.StartNew();
                RunResult result;
                try
                {
                    result = scenario switch
                    {
                        "idle" => await IdleScenario.RunAsync(system, clients, sizes, options, cancellationToken).ConfigureAwait(false),
                        "multinode" => await MultiNodeScenario.RunAsync(system, clients, sizes, options, cancellationToken).ConfigureAwait(false),
                        "conflate" => await ConflateScenario.RunAsync(system, mode!, clients, sizes, options, cancellationToken).ConfigureAwait(false),
                        _ => await RunLoadAsync(scenario, system, transport, clients, sizes, options, cancellationToken).ConfigureAwait(false),
                    };
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Console.Error.WriteLine($"  run failed: {e}");
                    result = new RunResult
                    {
                        FirstError = $"{e.GetType().Name}: {e.Message}",
                        Limit = "failed",
                        Conflate = mode is null ? null : new ConflateResult { Mode = mode },
                    };
                }
                result = result with { Scenario = scenario, System = system.Name, Transport = transport, Clients = clients, WallSeconds = clock.Elapsed.TotalSeconds };
                Print(result);
                runs.Add(result);
            }
        }
        return runs;
    }

    private static async Task<RunResult> RunLoadAsync(string scenario, BenchSystem system, string transport, int clients, Sizes sizes, BenchOptions options, CancellationToken cancellationToken)
    {
        await using var session = await Session.StartAsync(system, options, scenario, cancellationToken).ConfigureAwait(false);
        var perClientChannels = scenario == "channels";
        Func<int, string> channelOf = perClientChannels ? i => $"ch-{i}" : _ => scenario;
        var connected = await session.ConnectAsync(transport, clients, channelOf, cancellationToken).ConfigureAwait(false);
        var channels = perClientChannels ? Enumerable.Range(0, clients).Select(channelOf).ToList() : [scenario];
        var warm = connected > 0 && await session.WarmUpAsync(channels, cancellationToken).ConfigureAwait(false);
        var steps = new List<StepResult>();
        // A short poller waits up to an interval by design; it is saturated when it falls behind beyond that.
        var latencyBudget = TimeSpan.FromSeconds(1) + (transport == Transports.ShortPoll ? options.ShortPollInterval : TimeSpan.Zero);
        if (warm && sizes.WarmLoad > TimeSpan.Zero)
        {
            // Steady state, not start-up, is what a server is judged on: the JITs (.NET's tiers, V8's) get a load at
            // the first step's rate before anything counts. The figures of this interval are thrown away.
            _ = perClientChannels
                ? await session.MeasureAsync(connected, sizes.WarmLoad, n => channels[(int)(n % channels.Count)], 1, latencyBudget, cancellationToken).ConfigureAwait(false)
                : await session.MeasureAsync(sizes.Rates[0], sizes.WarmLoad, _ => scenario, connected, latencyBudget, cancellationToken).ConfigureAwait(false);
        }
        if (warm)
        {
            var saturatedInARow = 0;
            foreach (var rate in sizes.Rates)
            {
                // Many channels: one publication per channel per second, round robin; otherwise all on one channel.
                var step = perClientChannels
                    ? await session.MeasureAsync(connected, sizes.Step, n => channels[(int)(n % channels.Count)], 1, latencyBudget, cancellationToken).ConfigureAwait(false)
                    : await session.MeasureAsync(rate, sizes.Step, _ => scenario, connected, latencyBudget, cancellationToken).ConfigureAwait(false);
                steps.Add(step);
                Console.WriteLine($"    rate {rate,6}/s: {step.DeliveriesPerSecond,10:0} deliveries/s  p50 {step.P50Ms,8:0.0} ms  p99 {step.P99Ms,8:0.0} ms  server {step.ServerCpuPercent,4:0}%  gen {step.GeneratorCpuPercent,4:0}%  {step.Delivered}/{step.Expected}{(step.Saturated ? "  saturated" : "")}");
                // Two saturated steps in a row end the run: on 2 shared cores one step can miss by noise alone
                // (a p99 of 1,017 ms), and the next one tells whether the system really stopped keeping up.
                saturatedInARow = step.Saturated ? saturatedInARow + 1 : 0;
                if (saturatedInARow == 2)
                {
                    break;
                }
            }
        }
        return new RunResult
        {
            Connected = connected,
            ConnectFailures = session.ConnectFailures,
            Channels = channels.Count,
            FirstError = warm ? session.FirstError : session.FirstError ?? "warm-up: not every client received a publication",
            Steps = steps,
            Limit = steps.Count == 0 ? "failed" : steps[^1].Limit,
        };
    }

    private static void Print(RunResult r) =>
        Console.WriteLine($"  => {r.System} {r.Transport} x{r.Clients}{(r.Conflate is { } c ? $" ({c.Mode})" : "")}: connected {r.Connected}, failures {r.ConnectFailures}, limit: {r.Limit}" +
                          (r.KbPerConnection > 0 ? $", {r.KbPerConnection:0.0} KiB/connection" : "") +
                          (r.FirstError is null ? "" : $", first error: {r.FirstError}"));
}
