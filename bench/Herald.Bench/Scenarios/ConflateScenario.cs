using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HdrHistogram;
using Herald.Bench.Clients;
using Herald.Bench.Measurement;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>The slow subscribers of the conflate scenario and how they read while the publisher runs.</summary>
/// <param name="Slow">Slow subscribers, beside the fast ones (the size's clients).</param>
/// <param name="PayloadBytes">Size of each publication's payload.</param>
/// <param name="MaxQueuedBytes">The server's <c>Herald:MaxQueuedBytes</c> for the run (Conflate starts at half of it).</param>
/// <param name="StallAfter">When, after publishing starts, the slow subscribers stop reading.</param>
/// <param name="StallFor">How long they read nothing; then they read at full speed again, while publishing goes on or after it ended.</param>
internal sealed record ConflatePlan(int Slow, int PayloadBytes, int MaxQueuedBytes, TimeSpan StallAfter, TimeSpan StallFor);

/// <summary>
/// (f) latest-value channels: one channel with fast WebSocket subscribers (they read everything at once) and a few
/// slow ones whose readers stall for seconds, then resume, while the publisher publishes at a steady rate. Run once with the
/// channel in a namespace with <c>Conflate</c> and once in one without, each on a fresh server. With it, the slow
/// subscribers must stay connected, get skip notices for what they missed and reach the final offset; without it they
/// are closed as slow consumers (<c>4002</c>). Either way every fast subscriber must get every offset once, and its
/// latency is the step's. Herald only: no peer here has latest-value channels.
/// </summary>
internal static class ConflateScenario
{
    public const string Conflated = "conflate";
    public const string Plain = "plain";
    public static readonly string[] Modes = [Conflated, Plain];

    // Both namespaces exist in both modes' servers; the mode picks the channel, so nothing else differs.
    private const string ConflatedNamespace = "latest";
    private const string PlainNamespace = "plain";
    private const int HistorySize = 200;
    // The slow subscribers' socket receive buffer, fixed so that what the kernel holds of a stalled reader's backlog
    // does not depend on how long it read at full speed before (autotuning grew it to several MB in trial runs).
    private const int SlowReceiveBufferBytes = 128 * 1024;
    private static readonly TimeSpan SampleInterval = TimeSpan.FromMilliseconds(200); // as often as ServerProcess samples
    // How long the subscribers get, after the fast ones' drain, to reach the final offset (the slow ones read
    // the kernel's few MiB at full speed) or be seen closed.
    private static readonly TimeSpan SettleTimeout = TimeSpan.FromSeconds(30);

    public static async Task<RunResult> RunAsync(BenchSystem system, string mode, int fast, Sizes sizes, BenchOptions options, CancellationToken cancellationToken)
    {
        var plan = sizes.Conflate ?? throw new ArgumentException("the conflate scenario needs a ConflatePlan in its sizes");
        var rate = sizes.Rates[0];
        var channel = $"{(mode == Conflated ? ConflatedNamespace : PlainNamespace)}:bench";
        var environment = new Dictionary<string, string>
        {
            [$"Herald__Namespaces__{ConflatedNamespace}__Conflate"] = "true",
            [$"Herald__Namespaces__{ConflatedNamespace}__HistorySize"] = HistorySize.ToString(CultureInfo.InvariantCulture),
            [$"Herald__Namespaces__{PlainNamespace}__HistorySize"] = HistorySize.ToString(CultureInfo.InvariantCulture),
            ["Herald__MaxQueuedBytes"] = plan.MaxQueuedBytes.ToString(CultureInfo.InvariantCulture),
        };
        await using var session = await Session.StartAsync(system, options with { PayloadBytes = plan.PayloadBytes }, $"conflate-{mode}", cancellationToken, environment).ConfigureAwait(false);
        // The slow subscribers count into their own Stats, so the step's latency and deliveries are the fast ones' only.
        using var slowContext = new ClientContext(session.Server.Port, new Stats(), options.SourceAddresses) { ReceiveBufferBytes = SlowReceiveBufferBytes };
        var connected = await session.ConnectAsync(fast, _ => new HeraldWebSocketClient(session.Context, channel) { Offsets = new OffsetCheck() }, cancellationToken).ConfigureAwait(false);
        await session.ConnectAsync(plan.Slow, _ => new HeraldWebSocketClient(slowContext, channel) { Offsets = new OffsetCheck(), Pace = new ReadPace() }, cancellationToken).ConfigureAwait(false);
        var clients = session.Clients.OfType<HeraldWebSocketClient>().ToList();
        var fastClients = clients.Where(c => c.Pace is null).ToList();
        var slowClients = clients.Where(c => c.Pace is not null).ToList();
        var result = new RunResult { Connected = connected, ConnectFailures = session.ConnectFailures, Channels = 1 };
        var figures = new ConflateResult
        {
            Mode = mode,
            Channel = channel,
            Rate = rate,
            PublishSeconds = sizes.Step.TotalSeconds,
            WarmLoadSeconds = sizes.WarmLoad.TotalSeconds,
            PayloadBytes = plan.PayloadBytes,
            MaxQueuedBytes = plan.MaxQueuedBytes,
            StallAfterSeconds = plan.StallAfter.TotalSeconds,
            StallSeconds = plan.StallFor.TotalSeconds,
            SlowReceiveBufferBytes = SlowReceiveBufferBytes,
        };
        if (connected == 0 || slowClients.Count < plan.Slow || !await session.WarmUpAsync([channel], cancellationToken).ConfigureAwait(false))
        {
            return result with
            {
                Conflate = figures,
                Limit = "failed",
                FirstError = session.FirstError ?? (slowClients.Count < plan.Slow ? "a slow subscriber did not connect" : "warm-up: not every client received a publication"),
            };
        }
        var latencyBudget = TimeSpan.FromSeconds(1);
        var (beforeRss, beforePss) = await IdleScenario.SettledMemoryAsync(session.Server, TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        var memory = new MemoryPeaks(session.Server);
        session.Stats.TrackPhases();
        if (sizes.WarmLoad > TimeSpan.Zero)
        {
            // Steady state, not start-up, as in the other scenarios: every subscriber reads during the warm load.
            _ = await session.MeasureAsync(rate, sizes.WarmLoad, _ => channel, connected, latencyBudget, cancellationToken).ConfigureAwait(false);
        }

        var started = Stopwatch.GetTimestamp();
        var publishing = Stopwatch.StartNew();
        session.Stats.TakePhase(); // the warm load's
        var timeline = RunTimelineAsync(memory, session.Stats, [.. slowClients.Select(c => c.Pace!)], plan, publishing, cancellationToken);
        var step = await session.MeasureAsync(rate, sizes.Step, _ => channel, connected, latencyBudget, cancellationToken).ConfigureAwait(false);
        var (peaks, beforeStall, inStall) = await timeline.ConfigureAwait(false);
        var afterStall = session.Stats.TakePhase();
        var head = await HeadAsync(session.Context.Http, channel, cancellationToken).ConfigureAwait(false);
        await SettleAsync(clients, head, cancellationToken).ConfigureAwait(false);
        var counters = await ServerCountersAsync(session.Context.Http, cancellationToken).ConfigureAwait(false);

        figures = figures with
        {
            FinalOffset = head,
            Fast = Group(fastClients, head),
            FastBeforeStall = Latency(beforeStall),
            FastInStall = Latency(inStall),
            FastAfterStall = Latency(afterStall),
            Slow = Group(slowClients, head),
            SlowSubscribers = [.. slowClients.Select(c => Slow(c, head, started))],
            BeforeRssMb = beforeRss / 1048576.0,
            BeforePssMb = beforePss / 1048576.0,
            ReadingPeakRssMb = peaks.Reading.Rss / 1048576.0,
            ReadingPeakPssMb = peaks.Reading.Pss / 1048576.0,
            StallPeakRssMb = peaks.Stall.Rss / 1048576.0,
            StallPeakPssMb = peaks.Stall.Pss / 1048576.0,
            ServerConflatedSkips = counters.GetValueOrDefault("herald_conflated_skips_total"),
            ServerSlowConsumerCloses = counters.GetValueOrDefault("herald_slow_consumer_closes_total"),
        };
        Console.WriteLine($"    fast: {figures.Fast.Publications}/{figures.Fast.OffsetsDue} offsets, {figures.Fast.Gaps} gaps, {figures.Fast.Duplicates} duplicates, {figures.Fast.SkipNotices} skip notices; p50 {step.P50Ms:0.0} ms p99 {step.P99Ms:0.0} ms (p99 before the stall {figures.FastBeforeStall.P99Ms:0.0}, in it {figures.FastInStall.P99Ms:0.0}, after it {figures.FastAfterStall.P99Ms:0.0})");
        foreach (var s in figures.SlowSubscribers)
        {
            Console.WriteLine($"    slow: {(s.CloseCode is { } code ? $"closed {code} at {s.EndedAtSeconds:0.0} s" : s.LostWith is { } lost ? $"lost at {s.EndedAtSeconds:0.0} s ({lost})" : "open")}, {s.Publications} publications, {s.SkipNotices} skip notices ({s.SkippedOffsets} offsets), last {s.LastOffset} of {head}");
        }
        Console.WriteLine($"    server PSS {figures.BeforePssMb:0} MB before, {figures.ReadingPeakPssMb:0} MB peak while all read, {figures.StallPeakPssMb:0} MB peak in it; /metrics: {figures.ServerConflatedSkips} conflated skips, {figures.ServerSlowConsumerCloses} slow-consumer closes");
        return result with
        {
            Conflate = figures,
            Steps = [step],
            Limit = step.Limit,
            FirstError = session.FirstError,
        };
    }

    /// <summary>What the run must show; <see langword="null"/> when it did.</summary>
    public static string? Check(RunResult run)
    {
        if (run.Conflate is not { } c)
        {
            return "no conflate figures";
        }
        var problems = new List<string>();
        if (c.Fast.Gaps > 0 || c.Fast.Duplicates > 0 || c.Fast.SkipNotices > 0)
        {
            problems.Add($"fast subscribers did not get every offset once: {c.Fast.Gaps} missing, {c.Fast.Duplicates} duplicated, {c.Fast.SkipNotices} skip notices");
        }
        if (c.Fast.Closed > 0 || c.Fast.SawFinal < c.Fast.Count)
        {
            problems.Add($"{c.Fast.Count - c.Fast.SawFinal} of {c.Fast.Count} fast subscribers did not reach the final offset {c.FinalOffset} ({c.Fast.Closed} closed)");
        }
        if (c.Slow.Gaps > 0 || c.Slow.Duplicates > 0)
        {
            problems.Add($"slow subscribers: {c.Slow.Gaps} offsets missing without a skip notice, {c.Slow.Duplicates} duplicated");
        }
        if (c.Mode == Conflated)
        {
            if (c.Slow.Closed > 0 || c.ServerSlowConsumerCloses > 0)
            {
                problems.Add($"{c.Slow.Closed} slow subscribers closed with Conflate (codes {string.Join(",", c.SlowSubscribers.Select(s => s.CloseCode?.ToString(CultureInfo.InvariantCulture) ?? s.LostWith ?? "-"))}; server: {c.ServerSlowConsumerCloses} slow-consumer closes)");
            }
            if (c.Slow.SawFinal < c.Slow.Count)
            {
                problems.Add($"{c.Slow.Count - c.Slow.SawFinal} of {c.Slow.Count} slow subscribers did not reach the final offset {c.FinalOffset}");
            }
            if (c.Slow.SkipNotices == 0 && c.Slow.Closed == 0)
            {
                problems.Add("no slow subscriber got a skip notice: the stall never filled its queue past half, so the run shows nothing");
            }
            if (c.ServerConflatedSkips != c.Slow.SkippedOffsets + c.Fast.SkippedOffsets)
            {
                problems.Add($"the server counted {c.ServerConflatedSkips} conflated skips, the subscribers' skip notices named {c.Slow.SkippedOffsets + c.Fast.SkippedOffsets} offsets");
            }
        }
        else
        {
            if (c.Slow.Closed < c.Slow.Count || c.ServerSlowConsumerCloses < c.Slow.Count)
            {
                problems.Add($"without Conflate only {c.Slow.Closed} of {c.Slow.Count} slow subscribers were closed (server: {c.ServerSlowConsumerCloses} slow-consumer closes): the stall did not fill the queue, so the run shows nothing");
            }
            if (c.Slow.SkipNotices > 0 || c.ServerConflatedSkips > 0)
            {
                problems.Add($"skip notices on a channel without Conflate ({c.Slow.SkipNotices} received, {c.ServerConflatedSkips} counted by the server)");
            }
        }
        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    /// <summary>
    /// Stops the slow subscribers' reading for the stall and resumes it, with the memory sampler in its stall phase
    /// meanwhile; cuts the fast subscribers' latency (<paramref name="fast"/>) at the stall's start and end.
    /// </summary>
    private static async Task<(MemoryPeaks.Peaks Memory, HistogramBase BeforeStall, HistogramBase InStall)> RunTimelineAsync(
        MemoryPeaks memory, Stats fast, IReadOnlyList<ReadPace> paces, ConflatePlan plan, Stopwatch clock, CancellationToken cancellationToken)
    {
        await DelayUntilAsync(clock, plan.StallAfter, cancellationToken).ConfigureAwait(false);
        var beforeStall = fast.TakePhase();
        memory.Stalled();
        foreach (var pace in paces)
        {
            pace.Stop();
        }
        await DelayUntilAsync(clock, plan.StallAfter + plan.StallFor, cancellationToken).ConfigureAwait(false);
        var peaks = await memory.StopAsync().ConfigureAwait(false);
        var inStall = fast.TakePhase();
        foreach (var pace in paces)
        {
            pace.Resume();
        }
        return (peaks, beforeStall, inStall);
    }

    // The phases change at set times of the run: this wait is the schedule, not a synchronisation.
    private static Task DelayUntilAsync(Stopwatch clock, TimeSpan at, CancellationToken cancellationToken) =>
        at > clock.Elapsed ? Task.Delay(at - clock.Elapsed, cancellationToken) : Task.CompletedTask;

    /// <summary>
    /// Samples the server's memory (RSS and PSS of its process tree) every <see cref="SampleInterval"/>, keeping the
    /// peak of each phase: while every subscriber reads (the warm load and the first seconds of publishing), then
    /// from the stall's start until it is stopped (when the stall ends).
    /// </summary>
    private sealed class MemoryPeaks
    {
        private readonly ServerProcess _server;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private readonly Lock _gate = new();
        private (long Rss, long Pss) _reading;
        private (long Rss, long Pss) _stall;
        private volatile bool _stalled;

        public MemoryPeaks(ServerProcess server)
        {
            _server = server;
            _loop = Task.Run(SampleAsync);
        }

        public readonly record struct Peaks((long Rss, long Pss) Reading, (long Rss, long Pss) Stall);

        public void Stalled() => _stalled = true;

        public async Task<Peaks> StopAsync()
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await _loop.ConfigureAwait(false);
            _stop.Dispose();
            lock (_gate)
            {
                return new Peaks(_reading, _stall);
            }
        }

        private async Task SampleAsync()
        {
            using var timer = new PeriodicTimer(SampleInterval);
            try
            {
                do
                {
                    var sample = _server.Sample();
                    lock (_gate)
                    {
                        ref var peak = ref _stalled ? ref _stall : ref _reading;
                        peak = (Math.Max(peak.Rss, sample.RssBytes), Math.Max(peak.Pss, sample.PssBytes));
                    }
                }
                while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false));
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>The channel's head from the server API's history (the newest publication's offset).</summary>
    private static async Task<long> HeadAsync(HttpClient http, string channel, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/channels/{channel}/history?limit=1&reverse=true");
        request.Headers.Authorization = new("Bearer", HeraldSystem.ApiKey);
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        using var body = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false));
        return body.RootElement.GetProperty("offset").GetInt64();
    }

    /// <summary>Waits until every subscriber has reached <paramref name="head"/> or lost its connection, up to <see cref="SettleTimeout"/>.</summary>
    private static async Task SettleAsync(IReadOnlyList<HeraldWebSocketClient> clients, long head, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < SettleTimeout && clients.Any(c => c.EndedAt == 0 && !c.Failed && c.Offsets!.Last < head))
        {
            // Polled as the other scenarios poll their counters: the clients' loops only count.
            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reads the server's counters from <c>GET /metrics</c> (Prometheus text: one <c>name value</c> per line).</summary>
    private static async Task<Dictionary<string, long>> ServerCountersAsync(HttpClient http, CancellationToken cancellationToken)
    {
        var text = await http.GetStringAsync(new Uri("metrics", UriKind.Relative), cancellationToken).ConfigureAwait(false);
        var counters = new Dictionary<string, long>();
        foreach (var line in text.Split('\n'))
        {
            var parts = line.Split(' ');
            if (parts.Length == 2 && !line.StartsWith('#') && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                counters[parts[0]] = (long)value;
            }
        }
        return counters;
    }

    private static PhaseLatency Latency(HistogramBase h) => h.TotalCount == 0 ? new PhaseLatency() : new PhaseLatency
    {
        Deliveries = h.TotalCount,
        P50Ms = h.GetValueAtPercentile(50) / 1000.0,
        P99Ms = h.GetValueAtPercentile(99) / 1000.0,
        MaxMs = h.GetValueAtPercentile(100) / 1000.0,
    };

    private static bool Ended(HeraldWebSocketClient c) => c.EndedAt != 0 || c.Failed;

    private static SubscriberGroup Group(IReadOnlyList<HeraldWebSocketClient> clients, long head) => new()
    {
        Count = clients.Count,
        OffsetsDue = clients.Sum(c => head - c.Offsets!.SubscribedAt),
        Publications = clients.Sum(c => c.Offsets!.Publications),
        Gaps = clients.Sum(c => c.Offsets!.Gaps),
        Duplicates = clients.Sum(c => c.Offsets!.Duplicates),
        SkipNotices = clients.Sum(c => c.Offsets!.SkipNotices),
        SkippedOffsets = clients.Sum(c => c.Offsets!.SkippedOffsets),
        SawFinal = clients.Count(c => c.Offsets!.Last == head),
        Closed = clients.Count(Ended),
    };

    private static SlowSubscriber Slow(HeraldWebSocketClient c, long head, long publishingStarted) => new()
    {
        CloseCode = c.CloseCode,
        LostWith = c.LostWith,
        EndedAtSeconds = c.EndedAt == 0 ? null : Stopwatch.GetElapsedTime(publishingStarted, c.EndedAt).TotalSeconds,
        Publications = c.Offsets!.Publications,
        SkipNotices = c.Offsets.SkipNotices,
        SkippedOffsets = c.Offsets.SkippedOffsets,
        Gaps = c.Offsets.Gaps,
        Duplicates = c.Offsets.Duplicates,
        LastOffset = c.Offsets.Last,
        SawFinal = c.Offsets.Last == head,
    };
}
