using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Herald.Client.Tests.Infrastructure;

/// <summary>
/// The clients' chaos run, shared by the single-node test (<c>ChaosTests</c>) and the two-nodes-on-Redis one
/// (<c>RedisChaosTests</c>): clients on one channel, on mixed transports, while publishers publish through the server
/// API of the given nodes; a seeded chaos driver drops clients at random (client socket aborted, poll request
/// cancelled, server-side abort of the connection) and switches transports, some of them with their connection attempt
/// dropped. Every client must end with offsets 1..total, once each, in order.
/// </summary>
/// <param name="report">Where the run's figures go (the test output).</param>
public sealed class ChaosDriver(Action<string> report)
{
    private static readonly HeraldTransport[] Kinds = [HeraldTransport.WebSocket, HeraldTransport.LongPoll, HeraldTransport.ShortPoll];

    /// <summary>The channel the clients subscribe to; its namespace needs history for the whole run.</summary>
    public string Channel { get; init; } = "chat:chaos";

    public int Total { get; init; } = 20_000;

    public int ClientCount { get; init; } = 20;

    public int PublisherCount { get; init; } = 3;

    /// <summary>Generous but bounded: on 2 busy cores a run takes well under half of this.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(45);

    /// <summary>
    /// The chaos phase lasts while the publishers run, but never longer than this, so a stalled publisher cannot keep
    /// the driver (and the test) going forever.
    /// </summary>
    public TimeSpan ChaosBudget { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>A switch settles in one attempt (ConnectTimeout at most); past this it is reported as hung, which fails the test.</summary>
    public TimeSpan SwitchTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Runs the chaos and asserts the outcome.</summary>
    /// <param name="servers">The nodes; publisher p publishes through node p modulo their number.</param>
    /// <param name="live">Installed in every node (<c>configureApp</c>), for the server-side aborts.</param>
    /// <param name="options">The options of client i (its transports are set by the driver).</param>
    /// <param name="seed">Seeds the chaos.</param>
    public async Task<ChaosOutcome> RunAsync(IReadOnlyList<TestServer> servers, LiveRequests live, Func<int, HeraldClientOptions> options, int seed)
    {
        var clock = Stopwatch.StartNew();
        var clients = new List<ChaosClient>();
        try
        {
            for (var i = 0; i < ClientCount; i++)
            {
                var first = Kinds[i % Kinds.Length];
                var client = new HeraldClient(options(i) with
                {
                    // Start on `first`; the others stay available for switches.
                    Transports = [first, .. Kinds.Where(k => k != first)],
                });
                var chaosClient = new ChaosClient(client);
                clients.Add(chaosClient);
                await client.ConnectAsync().AsTask().WaitAsync(Timeout);
                Assert.Equal(first, client.Transport);
                chaosClient.Start(await client.SubscribeAsync(Channel).AsTask().WaitAsync(Timeout));
            }

            // Publishers share one counter, so together they publish exactly Total; publisher p publishes through
            // server p (modulo the number of servers).
            var next = 0;
            var publishers = Enumerable.Range(0, PublisherCount).Select(p => Task.Run(async () =>
            {
                var server = servers[p % servers.Count];
                int n;
                while ((n = Interlocked.Increment(ref next)) <= Total)
                {
                    await server.PublishAsync(Channel, $$"""{"p":{{p}},"n":{{n}}}""");
                }
            })).ToArray();
            var publishing = Task.WhenAll(publishers);

            // The chaos driver: random pacing, random victim, random kind of trouble, until the publishers are done.
            var random = new Random(seed);
            var stats = new ChaosStats();
            var switches = new List<Task>();
            var chaosClock = Stopwatch.StartNew();
            while (!publishing.IsCompleted && chaosClock.Elapsed < ChaosBudget)
            {
                await Task.Delay(random.Next(5, 40)); // pacing, not synchronisation
                var victim = clients[random.Next(clients.Count)];
                switch (random.Next(5))
                {
                    case 0 or 1:
                        // Client side: a WebSocket has its socket aborted; a poller has its request cancelled.
                        switch (victim.Client.BreakConnection())
                        {
                            case HeraldTransport.WebSocket:
                                stats.SocketAborts++;
                                break;
                            case HeraldTransport.LongPoll or HeraldTransport.ShortPoll:
                                stats.RequestCancels++;
                                break;
                        }
                        break;
                    case 2:
                        // Server side: Kestrel aborts the connection of a live /ws or /poll request.
                        if (live.AbortRandom(random) is { } path)
                        {
                            if (path == "/ws")
                            {
                                stats.ServerClosesWebSocket++;
                            }
                            else
                            {
                                stats.ServerClosesPoll++;
                            }
                        }
                        break;
                    case 3:
                        if (!victim.Switching)
                        {
                            var to = Kinds[random.Next(Kinds.Length)];
                            stats.Switches++;
                            switches.Add(victim.SwitchAsync(to, SwitchTimeout));
                        }
                        break;
                    default:
                        // A switch whose attempt is dropped: the server aborts the next connection attempt it sees
                        // (a /ws handshake, or the /cmd ping that opens a poller), most often this switch's own.
                        if (!victim.Switching)
                        {
                            var to = Kinds[random.Next(Kinds.Length)];
                            stats.Switches++;
                            live.DropNextAttempt();
                            switches.Add(victim.SwitchAsync(to, SwitchTimeout));
                        }
                        break;
                }
            }
            var chaosTime = chaosClock.Elapsed;
            await WithDumpAsync(publishing, Timeout, $"the publishers to finish ({Volatile.Read(ref next)} publications started)", clients);
            await WithDumpAsync(Task.WhenAll(switches), Timeout, "every switch to settle", clients);
            var deliveryClock = Stopwatch.StartNew();
            await WithDumpAsync(
                Wait.UntilAsync(() => clients.All(c => c.Count >= Total || c.Failed), Timeout, $"every client to hold {Total} offsets"),
                Timeout + TimeSpan.FromSeconds(5),
                $"every client to hold {Total} offsets",
                clients);
            clock.Stop();

            var reconnects = clients.Sum(c => c.Reconnects);
            var recoveryFailures = clients.Sum(c => c.RecoveryFailures);
            var switchTimes = clients.SelectMany(c => c.SwitchTimes).DefaultIfEmpty(TimeSpan.Zero).ToList();
            Report($"chaos: {ClientCount} clients, {PublisherCount} publishers, {servers.Count} node(s), {Total} publications, seed {seed}: {clock.Elapsed.TotalSeconds:0.0} s "
                + $"({chaosTime.TotalSeconds:0.0} s of chaos while publishing, then {deliveryClock.Elapsed.TotalSeconds:0.0} s until every client held every offset)");
            Report($"chaos: forced drops: {stats.SocketAborts} client socket aborts (WebSocket), {stats.RequestCancels} cancelled poll requests, "
                + $"{stats.ServerClosesWebSocket + stats.ServerClosesPoll} server-side aborts ({stats.ServerClosesWebSocket} /ws, {stats.ServerClosesPoll} /poll), "
                + $"{live.DroppedAttempts} connection attempts dropped by the server");
            Report($"chaos: {stats.Switches} transport switches: {clients.Sum(c => c.SwitchesLanded)} landed, "
                + $"{clients.Sum(c => c.SwitchesFellBack)} failed their attempt and fell back (HeraldTransportSwitchException), "
                + $"{clients.Sum(c => c.SwitchesHung)} hung; slowest {switchTimes.Max().TotalMilliseconds:0} ms, median {Median(switchTimes).TotalMilliseconds:0} ms");
            foreach (var failure in clients.SelectMany(c => c.SwitchFailures).Take(3))
            {
                Report($"chaos:   e.g. {failure}");
            }
            Report($"chaos: recoveries (reconnects that resumed with since): {reconnects}; recovered:false reports: {recoveryFailures}");
            Report($"chaos: per client reconnects: {string.Join(" ", clients.Select(c => c.Reconnects))}");
            Report($"chaos: connection attempts per node: {string.Join(", ", servers.Select(s => $"{s.Port}: {live.AttemptsOn(s.Port)}"))}");

            var expected = Enumerable.Range(1, Total).Select(i => (ulong)i).ToList();
            for (var i = 0; i < clients.Count; i++)
            {
                Assert.True(clients[i].Error is null, $"client {i}: {clients[i].Error}");
                Assert.True(expected.SequenceEqual(clients[i].Offsets), $"client {i} did not get 1..{Total} exactly once in order ({clients[i].Count} offsets)");
            }
            Assert.Equal(0, recoveryFailures);
            Assert.True(clients.All(c => c.SwitchesHung == 0), $"SwitchTransportAsync hung: {string.Join("; ", clients.SelectMany(c => c.SwitchFailures))}");
            Assert.True(clients.All(c => c.SwitchFailures.Count == c.SwitchesFellBack), $"a switch failed unexpectedly: {string.Join("; ", clients.SelectMany(c => c.SwitchFailures))}");
            Assert.True(stats.SocketAborts > 0 && stats.RequestCancels > 0 && stats.ServerClosesWebSocket + stats.ServerClosesPoll > 0 && stats.Switches > 0 && live.DroppedAttempts > 0,
                "every kind of chaos should have happened at least once");
            Assert.True(reconnects >= stats.SocketAborts, $"{reconnects} reconnects for {stats.SocketAborts} socket aborts");
            return new ChaosOutcome(reconnects, stats);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.Client.DisposeAsync();
            }
        }
    }

    private void Report(string line) => report(line);

    private static TimeSpan Median(List<TimeSpan> times) => times.Order().ElementAt(times.Count / 2);

    /// <summary>Awaits <paramref name="task"/>; when it takes too long, prints every client's state before failing, to show where it got stuck.</summary>
    private async Task WithDumpAsync(Task task, TimeSpan timeout, string what, List<ChaosClient> clients)
    {
        try
        {
            await task.WaitAsync(timeout);
        }
        catch (Exception ex) when (ex is TimeoutException or Xunit.Sdk.XunitException)
        {
            Report($"chaos: timed out waiting for {what}; client states:");
            for (var i = 0; i < clients.Count; i++)
            {
                Report($"  client {i}: {clients[i].Describe()}");
            }
            Assert.Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting for: {what} ({ex.Message})");
        }
    }

    public sealed class ChaosStats
    {
        public int SocketAborts { get; set; }

        public int RequestCancels { get; set; }

        public int ServerClosesWebSocket { get; set; }

        public int ServerClosesPoll { get; set; }

        public int Switches { get; set; }
    }

    /// <summary>One client: reads its subscription into a list of offsets and counts its reconnects.</summary>
    internal sealed class ChaosClient
    {
        private readonly List<ulong> _offsets = new();
        private readonly Lock _gate = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        // The last state changes, for the dump when something gets stuck.
        private readonly ConcurrentQueue<string> _recent = new();
        private readonly ConcurrentQueue<TimeSpan> _switchTimes = new();
        private readonly ConcurrentQueue<string> _switchFailures = new();
        private int _connects;
        private int _recoveryFailures;
        private int _switching;
        private int _landed;
        private int _fellBack;
        private int _hung;
        private volatile string? _switchInFlight;
        private volatile string? _error;
        private Task? _reading;
        private HeraldSubscription? _subscription;

        public ChaosClient(HeraldClient client)
        {
            Client = client;
            client.StateChanged += (_, e) =>
            {
                if (e.State == HeraldConnectionState.Connected)
                {
                    Interlocked.Increment(ref _connects);
                }
                _recent.Enqueue($"{_clock.ElapsedMilliseconds} ms {e}");
                while (_recent.Count > 12)
                {
                    _recent.TryDequeue(out string? _);
                }
            };
            client.RecoveryFailed += (_, _) => Interlocked.Increment(ref _recoveryFailures);
        }

        public HeraldClient Client { get; }

        /// <summary>Connections after the first: each resubscribed from the cursor.</summary>
        public int Reconnects => Math.Max(0, Volatile.Read(ref _connects) - 1);

        public int RecoveryFailures => Volatile.Read(ref _recoveryFailures);

        public bool Switching => Volatile.Read(ref _switching) != 0;

        public string? Error => _error;

        // A recovered:false would leave a gap for good: no use waiting for the offsets after it.
        public bool Failed => _error is not null || _reading is { IsCompleted: true } || RecoveryFailures > 0;

        public int Count
        {
            get
            {
                lock (_gate)
                {
                    return _offsets.Count;
                }
            }
        }

        public List<ulong> Offsets
        {
            get
            {
                lock (_gate)
                {
                    return [.. _offsets];
                }
            }
        }

        /// <summary>The first few offsets missing below the highest received, for the dump.</summary>
        private string Gaps()
        {
            var held = Offsets.ToHashSet();
            var missing = Enumerable.Range(1, held.Count == 0 ? 0 : (int)held.Max()).Select(i => (ulong)i).Where(o => !held.Contains(o)).Take(5).ToList();
            return missing.Count == 0 ? "none" : string.Join(",", missing);
        }

        public string Describe() =>
            $"{Count} offsets, missing {Gaps()}, cursor {_subscription?.Position}, {Client.State} {Client.Transport}, "
            + $"recovered:false {RecoveryFailures}, switch in flight: {_switchInFlight ?? "none"}, reader: {(_reading is { IsCompleted: true } ? "ended" : "running")}, error: {_error ?? "none"}; "
            + $"recent: {string.Join(" | ", _recent)}";

        public void Start(HeraldSubscription subscription) => _reading = Task.Run(async () =>
        {
            _subscription = subscription;
            try
            {
                await foreach (var publication in subscription)
                {
                    lock (_gate)
                    {
                        _offsets.Add(publication.Offset);
                    }
                }
                _error ??= "the subscription ended";
            }
            catch (Exception ex)
            {
                _error ??= $"the subscription failed: {ex}";
            }
        });

        public int SwitchesLanded => Volatile.Read(ref _landed);

        /// <summary>Switches whose one attempt failed (a drop during it): the client fell back to another transport.</summary>
        public int SwitchesFellBack => Volatile.Read(ref _fellBack);

        /// <summary>Switches that neither landed nor failed within the timeout: the bug this test was skipped for.</summary>
        public int SwitchesHung => Volatile.Read(ref _hung);

        public IReadOnlyCollection<TimeSpan> SwitchTimes => _switchTimes;

        public IReadOnlyCollection<string> SwitchFailures => _switchFailures;

        public async Task SwitchAsync(HeraldTransport to, TimeSpan timeout)
        {
            Interlocked.Exchange(ref _switching, 1);
            var started = _clock.Elapsed;
            _switchInFlight = $"to {to} since {started.TotalMilliseconds:0} ms";
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await Client.SwitchTransportAsync(to, cts.Token);
                Interlocked.Increment(ref _landed);
            }
            catch (HeraldTransportSwitchException ex)
            {
                // The attempt on `to` was dropped; the client fell back. Delivery is what is checked.
                Interlocked.Increment(ref _fellBack);
                _switchFailures.Enqueue($"{to}: {ex.Message}");
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                Interlocked.Increment(ref _hung);
                _switchFailures.Enqueue($"{to}: no outcome within {timeout.TotalSeconds:0} s ({Describe()})");
            }
            catch (Exception ex)
            {
                _switchFailures.Enqueue($"{to}: {ex}");
            }
            finally
            {
                _switchTimes.Enqueue(_clock.Elapsed - started);
                _switchInFlight = null;
                Interlocked.Exchange(ref _switching, 0);
            }
        }
    }

    /// <summary>Tracks the server's live /ws and /poll requests so that the test can abort one from the server side.</summary>
    public sealed class LiveRequests
    {
        private readonly ConcurrentDictionary<long, Entry> _live = new();
        private readonly ConcurrentDictionary<int, int> _attempts = new();
        private long _ids;
        private int _dropNext;
        private int _dropped;

        public int DroppedAttempts => Volatile.Read(ref _dropped);

        /// <summary>Makes the server abort the next connection attempt: a /ws handshake or a /cmd request (the ping that opens a poller).</summary>
        public void DropNextAttempt() => Volatile.Write(ref _dropNext, 1);

        /// <summary>Connection attempts (/ws handshakes and /cmd requests) the node on <paramref name="port"/> received.</summary>
        public int AttemptsOn(int port) => _attempts.TryGetValue(port, out var count) ? count : 0;

        public void Install(WebApplication app) => app.Use(async (context, next) =>
        {
            var path = context.Request.Path.Value;
            if (path is "/ws" or "/cmd")
            {
                _attempts.AddOrUpdate(context.Connection.LocalPort, 1, static (_, n) => n + 1);
            }
            if (path is "/ws" or "/cmd" && Interlocked.Exchange(ref _dropNext, 0) == 1)
            {
                Interlocked.Increment(ref _dropped);
                context.Abort();
                return;
            }
            if (path is not ("/ws" or "/poll"))
            {
                await next(context);
                return;
            }
            var id = Interlocked.Increment(ref _ids);
            var entry = new Entry(context, path);
            _live[id] = entry;
            try
            {
                await next(context);
            }
            finally
            {
                // Under the entry's lock, so that no abort can reach the context once it is recycled for another request.
                lock (entry)
                {
                    entry.Done = true;
                }
                _live.TryRemove(id, out _);
            }
        });

        /// <summary>Aborts a random live request; returns its path, or null when none was live.</summary>
        public string? AbortRandom(Random random)
        {
            var entries = _live.Values.ToList();
            if (entries.Count == 0)
            {
                return null;
            }
            var entry = entries[random.Next(entries.Count)];
            lock (entry)
            {
                if (entry.Done)
                {
                    return null;
                }
                entry.Context.Abort();
                entry.Done = true;
                return entry.Path;
            }
        }

        private sealed class Entry(HttpContext context, string path)
        {
            public HttpContext Context { get; } = context;

            public string Path { get; } = path;

            public bool Done { get; set; }
        }
    }
}

/// <summary>What a chaos run did: reconnects that resumed with since, and the chaos it caused.</summary>
public sealed record ChaosOutcome(int Reconnects, ChaosDriver.ChaosStats Stats);
