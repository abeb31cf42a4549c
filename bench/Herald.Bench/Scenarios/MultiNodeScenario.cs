using System.Diagnostics;
using System.Globalization;
using HdrHistogram;
using Herald.Bench.Measurement;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>
/// (e) multinode: three nodes of one system on one <c>redis-server</c>, WebSocket subscribers of one channel spread
/// evenly over the nodes and held by agent processes (more connections in total than one process may open here),
/// publications POSTed round-robin to the nodes, the rate stepped up as in fan-out. Besides the fan-out figures it
/// measures what Redis costs: its CPU per publication and its peak memory. Every run starts a fresh Redis and fresh
/// nodes, and stops them all at the end, whatever happened.
/// </summary>
internal static class MultiNodeScenario
{
    public const int NodeCount = 3;
    private const string Channel = "multinode";
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    public static async Task<RunResult> RunAsync(BenchSystem system, int clients, Sizes sizes, BenchOptions options, CancellationToken cancellationToken)
    {
        await using var group = await NodeGroup.StartAsync(system, options, cancellationToken).ConfigureAwait(false);
        var agents = new List<Agent>();
        try
        {
            // As few agents as hold the clients (at most Agent.PerAgent each), every agent spreading its connections
            // round-robin over the nodes and binding them to four source addresses of its own, so that each node gets
            // an even share and no address runs out of ephemeral ports.
            var ports = group.Nodes.Select(n => n.Port).ToList();
            var agentCount = (clients + Agent.PerAgent - 1) / Agent.PerAgent;
            for (var k = 0; k < agentCount; k++)
            {
                var count = clients / agentCount + (k < clients % agentCount ? 1 : 0);
                agents.Add(Agent.Start(system, ports, count, Channel, firstSource: 10 + k * 4, sources: 4));
            }
            var ready = await Task.WhenAll(agents.Select(a => a.ReadyAsync(cancellationToken))).ConfigureAwait(false);
            var connected = ready.Sum(r => r.Connected);
            string? firstError = ready.Select(r => r.Error).FirstOrDefault(e => e is not null);
            Console.WriteLine($"    {connected} of {clients} subscribers connected over {NodeCount} nodes ({agents.Count} agents)");

            using var publisher = new Publisher(system, ports) { PayloadBytes = options.PayloadBytes };
            var meter = new Meter(group, agents, publisher);
            var warm = connected > 0 && await meter.WarmUpAsync(options.WarmUpTimeout, cancellationToken).ConfigureAwait(false);
            var steps = new List<StepResult>();
            double redisIdlePercent = 0;
            if (warm)
            {
                if (sizes.WarmLoad > TimeSpan.Zero)
                {
                    // Steady state, not start-up: as in fan-out, a load at the first rate whose figures are thrown away.
                    _ = await meter.MeasureAsync(sizes.Rates[0], sizes.WarmLoad, connected, cancellationToken).ConfigureAwait(false);
                }
                // What Redis costs with nothing published (its timers, the nodes' heartbeats and position checks), so
                // the per-publication figure of a slow step can be read against it.
                redisIdlePercent = await meter.MeasureRedisIdleAsync(sizes.Step, cancellationToken).ConfigureAwait(false);
                var saturatedInARow = 0;
                foreach (var rate in sizes.Rates)
                {
                    var step = await meter.MeasureAsync(rate, sizes.Step, connected, cancellationToken).ConfigureAwait(false);
                    steps.Add(step);
                    Console.WriteLine($"    rate {rate,6}/s: {step.DeliveriesPerSecond,10:0} deliveries/s  p50 {step.P50Ms,8:0.0} ms  p99 {step.P99Ms,8:0.0} ms  nodes {step.ServerCpuPercent,4:0}%  redis {step.RedisCpuPercent,5:0.0}% ({step.RedisCpuMicrosPerPublication:0} µs/publication, {step.RedisCpuMicrosPerPublicationAboveIdle:0} above idle)  gen {step.GeneratorCpuPercent,4:0}%  {step.Delivered}/{step.Expected}{(step.Saturated ? "  saturated" : "")}");
                    saturatedInARow = step.Saturated ? saturatedInARow + 1 : 0;
                    if (saturatedInARow == 2)
                    {
                        break;
                    }
                }
            }
            firstError ??= meter.FirstError ?? publisher.FirstError;
            return new RunResult
            {
                Connected = connected,
                ConnectFailures = clients - connected,
                Channels = 1,
                Nodes = NodeCount,
                RedisIdleCpuPercent = redisIdlePercent,
                FirstError = warm ? firstError : firstError ?? "warm-up: not every client received a publication",
                Steps = steps,
                Limit = steps.Count == 0 ? "failed" : steps[^1].Limit,
            };
        }
        finally
        {
            await Task.WhenAll(agents.Select(a => a.DisposeAsync().AsTask())).ConfigureAwait(false);
        }
    }

    /// <summary>Asks the agents for their counters and measures steps from them, the nodes' and Redis's /proc.</summary>
    private sealed class Meter(NodeGroup group, List<Agent> agents, Publisher publisher)
    {
        private long _deliveries;
        private long _errors;
        private int _waiting;
        private int _failed;

        public string? FirstError => _failed > 0 ? $"{_failed} subscribers lost their connection" : null;

        /// <summary>Reads every agent; adds the latency buckets since the previous read into <paramref name="latency"/>.</summary>
        private async Task PollAsync(HistogramBase? latency, CancellationToken cancellationToken)
        {
            var counters = await Task.WhenAll(agents.Select(a => a.StatsAsync(cancellationToken))).ConfigureAwait(false);
            _deliveries = counters.Sum(c => c.Deliveries);
            _errors = counters.Sum(c => c.Errors);
            _waiting = counters.Sum(c => c.Waiting);
            _failed = counters.Sum(c => c.Failed);
            if (latency is not null)
            {
                foreach (var c in counters)
                {
                    Agent.Merge(latency, c.Latency);
                }
            }
        }

        /// <summary>Publishes until every subscriber has received something: the subscriptions on every node are live.</summary>
        public async Task<bool> WarmUpAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < timeout)
            {
                await PollAsync(null, cancellationToken).ConfigureAwait(false);
                if (_waiting == 0)
                {
                    // Let the last round's deliveries land before anything counts.
                    await Task.Delay(500, cancellationToken).ConfigureAwait(false);
                    await PollAsync(null, cancellationToken).ConfigureAwait(false);
                    return true;
                }
                // One publication per node (round-robin), so each node's path through Redis is exercised.
                for (var i = 0; i < NodeCount; i++)
                {
                    await publisher.PublishAsync(Channel, cancellationToken).ConfigureAwait(false);
                }
                await Task.Delay(500, cancellationToken).ConfigureAwait(false);
            }
            return false;
        }

        /// <summary>Redis's CPU share with nothing published; later steps subtract it for their marginal cost.</summary>
        public double RedisIdlePercent { get; private set; }

        public async Task<double> MeasureRedisIdleAsync(TimeSpan duration, CancellationToken cancellationToken)
        {
            var before = ProcessTree.PreciseCpuSeconds(group.Redis.Pid);
            var clock = Stopwatch.StartNew();
            await Task.Delay(duration, cancellationToken).ConfigureAwait(false);
            RedisIdlePercent = (ProcessTree.PreciseCpuSeconds(group.Redis.Pid) - before) / clock.Elapsed.TotalSeconds * 100;
            return RedisIdlePercent;
        }

        private double GeneratorCpuSeconds() => ProcessTree.SelfCpuSeconds() + agents.Sum(a => ProcessTree.Read(a.Pid).CpuSeconds);

        public async Task<StepResult> MeasureAsync(double rate, TimeSpan duration, int subscribers, CancellationToken cancellationToken)
        {
            var latency = new LongHistogram(1, 600_000_000, 3);
            await PollAsync(null, cancellationToken).ConfigureAwait(false);
            var delivered0 = _deliveries;
            var clientErrors0 = _errors;
            var publishFailed0 = publisher.Failed;
            var nodes0 = group.NodesCpuSeconds();
            var redis0 = ProcessTree.PreciseCpuSeconds(group.Redis.Pid);
            var gen0 = GeneratorCpuSeconds();
            group.ResetPeaks();

            var clock = Stopwatch.StartNew();
            var published = await publisher.RunAsync(rate, duration, _ => Channel, cancellationToken).ConfigureAwait(false);
            var publishLatency = publisher.LastRunLatency;
            var publishSeconds = clock.Elapsed.TotalSeconds;
            var expected = published * subscribers;
            // Drain: deliveries still queued count towards this step, up to 2 s after the last publication.
            var drain = Stopwatch.StartNew();
            do
            {
                await Task.Delay(PollInterval, cancellationToken).ConfigureAwait(false);
                await PollAsync(latency, cancellationToken).ConfigureAwait(false);
            }
            while (_deliveries - delivered0 < expected && drain.Elapsed < TimeSpan.FromSeconds(2));
            var seconds = clock.Elapsed.TotalSeconds;
            var nodesCpu = group.NodesCpuSeconds() - nodes0;
            var redisCpu = ProcessTree.PreciseCpuSeconds(group.Redis.Pid) - redis0;
            var genCpu = GeneratorCpuSeconds() - gen0;
            var delivered = _deliveries - delivered0;
            var clientErrors = _errors - clientErrors0;
            var p99 = latency.TotalCount == 0 ? 0 : latency.GetValueAtPercentile(99) / 1000.0;
            var publishRate = published / duration.TotalSeconds;
            var saturated = delivered < expected * 0.99 || p99 > 1000 || publishRate < rate * 0.9;
            // Redis and the nodes share the machine's cores: both are the server side when saying what limited a step.
            var serverPercent = (nodesCpu + redisCpu) / seconds * 100;
            var generatorPercent = genCpu / seconds * 100;
            return new StepResult
            {
                TargetRate = rate,
                Published = published,
                PublishedPerSecond = publishRate,
                Expected = expected,
                Delivered = delivered,
                Seconds = seconds,
                DeliveriesPerSecond = delivered / Math.Max(publishSeconds, duration.TotalSeconds),
                P50Ms = latency.TotalCount == 0 ? 0 : latency.GetValueAtPercentile(50) / 1000.0,
                P90Ms = latency.TotalCount == 0 ? 0 : latency.GetValueAtPercentile(90) / 1000.0,
                P99Ms = p99,
                MaxMs = latency.TotalCount == 0 ? 0 : latency.GetValueAtPercentile(100) / 1000.0,
                PublishP50Ms = publishLatency.TotalCount == 0 ? 0 : publishLatency.GetValueAtPercentile(50) / 1000.0,
                PublishP99Ms = publishLatency.TotalCount == 0 ? 0 : publishLatency.GetValueAtPercentile(99) / 1000.0,
                ServerCpuSeconds = nodesCpu,
                ServerCpuPercent = nodesCpu / seconds * 100,
                GeneratorCpuPercent = generatorPercent,
                DeliveriesPerCpuSecond = nodesCpu > 0 ? delivered / nodesCpu : 0,
                ServerCpuMicrosPerDelivery = delivered > 0 ? nodesCpu * 1e6 / delivered : 0,
                PeakRssMb = group.NodesPeakRssBytes() / 1048576.0,
                PeakPssMb = group.NodesPeakPssBytes() / 1048576.0,
                RedisCpuSeconds = redisCpu,
                RedisCpuPercent = redisCpu / seconds * 100,
                RedisCpuMicrosPerPublication = published > 0 ? redisCpu * 1e6 / published : 0,
                RedisCpuMicrosPerPublicationAboveIdle = published > 0 ? Math.Max(0, redisCpu - RedisIdlePercent / 100 * seconds) * 1e6 / published : 0,
                RedisPeakRssMb = group.Redis.PeakRssBytes / 1048576.0,
                Errors = clientErrors + publisher.Failed - publishFailed0,
                Saturated = saturated,
                Limit = Limits.Explain(serverPercent, generatorPercent, saturated, clientErrors),
            };
        }
    }

    /// <summary>One <c>redis-server</c> and <see cref="NodeCount"/> nodes of a system on it, each its own process.</summary>
    private sealed class NodeGroup : IAsyncDisposable
    {
        private NodeGroup(ServerProcess redis, IReadOnlyList<ServerProcess> nodes)
        {
            Redis = redis;
            Nodes = nodes;
        }

        public ServerProcess Redis { get; }

        public IReadOnlyList<ServerProcess> Nodes { get; }

        public static async Task<NodeGroup> StartAsync(BenchSystem system, BenchOptions options, CancellationToken cancellationToken)
        {
            var redisPort = ServerProcess.FreePort();
            var dir = Path.Combine(options.WorkDir, $"redis-{redisPort}");
            Directory.CreateDirectory(dir);
            // No persistence: what is measured is the broker's work, not the disk's (and nothing is kept between runs).
            var start = new ProcessStartInfo("redis-server") { WorkingDirectory = dir };
            foreach (var arg in new[] { "--port", redisPort.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir })
            {
                start.ArgumentList.Add(arg);
            }
            ServerProcess redis;
            try
            {
                redis = await ServerProcess.StartAsync(start, redisPort, Path.Combine(options.WorkDir, "logs", $"multinode-{system.Name}-redis-{redisPort}.log"), cancellationToken).ConfigureAwait(false);
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InvalidOperationException("redis-server is not installed (or not on PATH); bench/peers/install.sh installs it", e);
            }
            var configuration = $"127.0.0.1:{redisPort},abortConnect=false";
            var starting = Enumerable.Range(0, NodeCount).Select(i =>
            {
                var port = ServerProcess.FreePort();
                return ServerProcess.StartAsync(system.CreateNodeStart(options.Root, port, options.WorkDir, configuration), port,
                    Path.Combine(options.WorkDir, "logs", $"multinode-{system.Name}-node{i}-{port}.log"), cancellationToken);
            }).ToList();
            try
            {
                return new NodeGroup(redis, await Task.WhenAll(starting).ConfigureAwait(false));
            }
            catch
            {
                // One node failed to start: stop the ones that did, and Redis, before reporting it.
                foreach (var node in starting.Where(t => t.IsCompletedSuccessfully))
                {
                    await node.Result.DisposeAsync().ConfigureAwait(false);
                }
                await redis.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        public double NodesCpuSeconds() => Nodes.Sum(n => n.Sample().CpuSeconds);

        // Each node's own peak, summed: the nodes peak at about the same moment under one fan-out, so this is close to
        // (and never below) the peak of their sum.
        public long NodesPeakRssBytes() => Nodes.Sum(n => n.PeakRssBytes);

        public long NodesPeakPssBytes() => Nodes.Sum(n => n.PeakPssBytes);

        public void ResetPeaks()
        {
            foreach (var node in Nodes)
            {
                node.ResetPeak();
            }
            Redis.ResetPeak();
        }

        public async ValueTask DisposeAsync()
        {
            await Task.WhenAll(Nodes.Select(n => n.DisposeAsync().AsTask())).ConfigureAwait(false);
            await Redis.DisposeAsync().ConfigureAwait(false);
        }
    }
}
