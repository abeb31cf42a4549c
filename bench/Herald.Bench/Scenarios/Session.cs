using System.Diagnostics;
using System.Net;
using Herald.Bench.Clients;
using Herald.Bench.Measurement;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>
/// One server process of one system with its clients: connect, warm up, and measure steps. Every run starts a fresh
/// server so nothing carries over between systems or sizes.
/// </summary>
internal sealed class Session : IAsyncDisposable
{
    private readonly List<BenchClient> _clients = [];
    private string? _firstError;

    private Session(BenchSystem system, ServerProcess server, BenchOptions options)
    {
        System = system;
        Server = server;
        Options = options;
        Stats = new Stats();
        Context = new ClientContext(server.Port, Stats, options.SourceAddresses);
        Publisher = new Publisher(system, server.Port) { PayloadBytes = options.PayloadBytes };
    }

    public BenchSystem System { get; }
    public ServerProcess Server { get; }
    public BenchOptions Options { get; }
    public Stats Stats { get; }
    public ClientContext Context { get; }
    public Publisher Publisher { get; }
    public IReadOnlyList<BenchClient> Clients => _clients;
    public int ConnectFailures { get; private set; }
    public string? FirstError => _firstError ?? Publisher.FirstError;

    /// <summary>Starts a fresh server of <paramref name="system"/>; <paramref name="environment"/> adds to (or overrides) its configuration.</summary>
    public static async Task<Session> StartAsync(BenchSystem system, BenchOptions options, string label, CancellationToken cancellationToken, IReadOnlyDictionary<string, string>? environment = null)
    {
        var port = ServerProcess.FreePort();
        var start = system.CreateStart(options.Root, port, options.WorkDir);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }
        var server = await ServerProcess.StartAsync(start, port, Path.Combine(options.WorkDir, "logs", $"{label}-{system.Name}-{port}.log"), cancellationToken).ConfigureAwait(false);
        return new Session(system, server, options);
    }

    /// <summary>Opens <paramref name="count"/> subscribers, <see cref="BenchOptions.ConnectParallelism"/> at a time.</summary>
    public Task<int> ConnectAsync(string transport, int count, Func<int, string> channelFor, CancellationToken cancellationToken) =>
        ConnectAsync(count, i => System.CreateClient(transport, Context, channelFor(i), Options.ShortPollInterval), cancellationToken);

    /// <summary>Opens the <paramref name="count"/> subscribers <paramref name="create"/> makes, <see cref="BenchOptions.ConnectParallelism"/> at a time.</summary>
    public async Task<int> ConnectAsync(int count, Func<int, BenchClient> create, CancellationToken cancellationToken)
    {
        using var gate = new SemaphoreSlim(Options.ConnectParallelism);
        var connected = 0;
        var tasks = new List<Task>(count);
        for (var i = 0; i < count; i++)
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            var client = create(i);
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(TimeSpan.FromSeconds(30));
                    await client.StartAsync(timeout.Token).ConfigureAwait(false);
                    lock (_clients)
                    {
                        _clients.Add(client);
                    }
                    Interlocked.Increment(ref connected);
                }
                catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException or global::System.Net.Sockets.SocketException or global::System.Net.WebSockets.WebSocketException)
                {
                    Interlocked.CompareExchange(ref _firstError, $"connect: {e.GetType().Name}: {e.Message}", null);
                    await client.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    gate.Release();
                }
            }, CancellationToken.None));
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        ConnectFailures += count - connected;
        return connected;
    }

    /// <summary>
    /// Publishes to each channel in turn until every client has received something: the subscriptions are then
    /// live (no system confirms them the same way) and the server's code paths are warm. Then the counters restart.
    /// </summary>
    public async Task<bool> WarmUpAsync(IReadOnlyList<string> channels, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        var ok = false;
        var round = 0;
        while (deadline.Elapsed < Options.WarmUpTimeout)
        {
            List<BenchClient> waiting;
            lock (_clients)
            {
                waiting = _clients.Where(c => c.Received == 0 && !c.Failed).ToList();
            }
            if (waiting.Count == 0)
            {
                ok = true;
                break;
            }
            var targets = channels.Count <= 64 ? channels : [.. waiting.Select(ChannelOf).Distinct()];
            await Parallel.ForEachAsync(targets, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cancellationToken },
                async (channel, ct) => await Publisher.PublishAsync(channel, ct).ConfigureAwait(false)).ConfigureAwait(false);
            // Pace the rounds so slow transports (short polling) see each round before the next.
            await Task.Delay(round++ == 0 ? 200 : 500, cancellationToken).ConfigureAwait(false);
        }
        // Let in-flight deliveries of the warm-up land before counting starts: a short poller may take an interval.
        await Task.Delay(Options.ShortPollInterval + TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(false);
        Stats.TakeInterval();
        return ok;
    }

    private static string ChannelOf(BenchClient client) => client.Channel;

    /// <summary>Publishes at <paramref name="rate"/> for the step's duration and measures what the clients get.</summary>
    public async Task<StepResult> MeasureAsync(double rate, TimeSpan duration, Func<long, string> channelFor, int subscribersPerPublication, TimeSpan latencyBudget, CancellationToken cancellationToken)
    {
        var delivered0 = Stats.Deliveries;
        var requests0 = Stats.Requests;
        var bytes0 = Stats.BytesOnWire;
        var clientErrors0 = Stats.Errors;
        var errors0 = Stats.Errors + Publisher.Failed;
        var server0 = Server.Sample();
        var gen0 = ProcessTree.SelfCpuSeconds();
        Server.ResetPeak();
        Stats.TakeInterval();

        var clock = Stopwatch.StartNew();
        var published = await Publisher.RunAsync(rate, duration, channelFor, cancellationToken).ConfigureAwait(false);
        var publishLatency = Publisher.LastRunLatency;
        var publishSeconds = clock.Elapsed.TotalSeconds;
        var expected = published * subscribersPerPublication;
        // Drain: deliveries still in queues count towards this step, up to a bound (short polls need an interval).
        var drain = TimeSpan.FromSeconds(Math.Max(2, Options.ShortPollInterval.TotalSeconds * 2));
        var drainClock = Stopwatch.StartNew();
        while (Stats.Deliveries - delivered0 < expected && drainClock.Elapsed < drain)
        {
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        var seconds = clock.Elapsed.TotalSeconds;
        var histogram = Stats.TakeInterval();
        var server1 = Server.Sample();
        var gen1 = ProcessTree.SelfCpuSeconds();
        var delivered = Stats.Deliveries - delivered0;
        var cpu = server1.CpuSeconds - server0.CpuSeconds;
        var serverPercent = cpu / seconds * 100;
        var generatorPercent = (gen1 - gen0) / seconds * 100;
        // A step with no delivery at all (every subscriber closed by the server) has an empty histogram.
        var p99 = histogram.TotalCount == 0 ? 0 : Ms(histogram.GetValueAtPercentile(99));
        // Publications are paced over the step; the last ones may still be answered after it, so the rate offered
        // is what was sent in the step's window, not the wait for the stragglers.
        var publishRate = published / duration.TotalSeconds;
        var saturated = delivered < expected * 0.99 || p99 > latencyBudget.TotalMilliseconds || publishRate < rate * 0.9;
        return new StepResult
        {
            TargetRate = rate,
            Published = published,
            PublishedPerSecond = publishRate,
            Expected = expected,
            Delivered = delivered,
            Seconds = seconds,
            DeliveriesPerSecond = delivered / Math.Max(publishSeconds, duration.TotalSeconds),
            P50Ms = histogram.TotalCount == 0 ? 0 : Ms(histogram.GetValueAtPercentile(50)),
            P90Ms = histogram.TotalCount == 0 ? 0 : Ms(histogram.GetValueAtPercentile(90)),
            P99Ms = p99,
            // GetMaxValue's enumerator throws on some interval histograms (HdrHistogram.NET 2.5); the 100th percentile is
            // the same figure, read another way.
            MaxMs = histogram.TotalCount == 0 ? 0 : Ms(histogram.GetValueAtPercentile(100)),
            PublishP50Ms = publishLatency.TotalCount == 0 ? 0 : Ms(publishLatency.GetValueAtPercentile(50)),
            PublishP99Ms = publishLatency.TotalCount == 0 ? 0 : Ms(publishLatency.GetValueAtPercentile(99)),
            ServerCpuSeconds = cpu,
            ServerCpuPercent = serverPercent,
            GeneratorCpuPercent = generatorPercent,
            DeliveriesPerCpuSecond = cpu > 0 ? delivered / cpu : 0,
            PeakRssMb = Server.PeakRssBytes / 1048576.0,
            PeakPssMb = Server.PeakPssBytes / 1048576.0,
            BytesPerDelivery = delivered > 0 ? (double)(Stats.BytesOnWire - bytes0) / delivered : 0,
            RequestsPerDelivery = delivered > 0 ? (double)(Stats.Requests - requests0) / delivered : 0,
            Errors = Stats.Errors + Publisher.Failed - errors0,
            Saturated = saturated,
            Limit = Limits.Explain(serverPercent, generatorPercent, saturated, Stats.Errors - clientErrors0, ClosedByServer()),
        };
    }

    private static double Ms(long micros) => micros / 1000.0;

    /// <summary>The close codes the server ended WebSocket subscribers with so far, most frequent first ("4004 x10000").</summary>
    private string? ClosedByServer()
    {
        var codes = _clients.OfType<WebSocketClient>().Where(c => c.CloseCode is not null).GroupBy(c => c.CloseCode!.Value).OrderByDescending(g => g.Count()).ToList();
        return codes.Count == 0 ? null : string.Join(", ", codes.Select(g => $"{g.Key} x{g.Count()}"));
    }

    public async ValueTask DisposeAsync()
    {
        await Parallel.ForEachAsync(_clients, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (c, _) => await c.DisposeAsync().ConfigureAwait(false)).ConfigureAwait(false);
        Publisher.Dispose();
        Context.Dispose();
        await Server.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>Says what held a run back, from the CPU figures of the server and of the generator (2 cores share both).</summary>
internal static class Limits
{
    public static string Explain(double serverPercent, double generatorPercent, bool saturated, long clientErrors, string? closedByServer = null)
    {
        var cores = Environment.ProcessorCount * 100.0;
        if (!saturated)
        {
            return "none (below saturation)";
        }
        if (closedByServer is not null)
        {
            // Herald closes subscribers with 4004 when its fan-out falls Herald:MaxDispatchBacklog behind (4002: a
            // connection's own queue overflowed); either way the server's CPU could not keep up with the step.
            return $"subscribers closed by the server ({closedByServer}), {(serverPercent + generatorPercent > cores * 0.85 ? "CPU" : "server")} behind";
        }
        if (clientErrors > 0)
        {
            // Herald's polling clients count recovered:false answers: a poll fell behind the channel's history.
            return "history window (polls answered recovered:false)";
        }
        if (serverPercent + generatorPercent > cores * 0.85)
        {
            return serverPercent >= generatorPercent ? "CPU (server took most)" : "CPU (generator took most)";
        }
        return serverPercent > 90 ? "server CPU (one core)" : "latency/queueing";
    }
}

/// <summary>The knobs every scenario shares.</summary>
internal sealed record BenchOptions
{
    public required string Root { get; init; }
    public required string WorkDir { get; init; }
    public IReadOnlyList<IPAddress> SourceAddresses { get; init; } = [IPAddress.Loopback];
    public int PayloadBytes { get; init; } = 100;
    public int ConnectParallelism { get; init; } = 64;
    public TimeSpan WarmUpTimeout { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan ShortPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Transports to run (all a system serves when empty); for investigating, not for published results.</summary>
    public IReadOnlyList<string> OnlyTransports { get; init; } = [];
}
