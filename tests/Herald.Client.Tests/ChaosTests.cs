using System.Collections.Concurrent;
using System.Diagnostics;
using Herald.Client.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Xunit.Abstractions;

namespace Herald.Client.Tests;

/// <summary>
/// 20 clients on one channel, on mixed transports, while 3 publishers publish 20,000 publications through the server
/// API; a seeded chaos driver drops clients at random (client socket aborted, poll request cancelled, server-side
/// abort of the connection) and switches transports. Every client must end with offsets 1..20,000, once each, in order.
/// </summary>
public sealed class ChaosTests(ITestOutputHelper output)
{
    private const string Channel = "chat:chaos";
    private const int Total = 20_000;
    private const int ClientCount = 20;
    private const int PublisherCount = 3;
    private const int Seed = 20_000;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(45);
    private static readonly HeraldTransport[] Kinds = [HeraldTransport.WebSocket, HeraldTransport.LongPoll, HeraldTransport.ShortPoll];

    // Kept out of CI until it is reliable: 3 of its first 5 runs hung because SwitchTransportAsync waits forever when
    // the switch attempt is dropped and the client falls back (issue 4). Run it with: dotnet test tests/Herald.Client.Tests --filter FullyQualifiedName~Chaos after removing Skip.
    [Fact(Skip = "Not yet reliable in CI: SwitchTransportAsync can wait forever when a switch attempt is dropped (issue 4)")]
    public async Task Chaos_MixedTransports_RandomDropsAndSwitches_EveryClientGetsEveryOffsetOnceInOrder()
    {
        var clock = Stopwatch.StartNew();
        var live = new LiveRequests();
        await using var server = await TestServer.StartAsync(
            o => o.Namespaces["chat"] = new NamespaceOptions { HistorySize = 50_000, HistoryTtl = TimeSpan.FromMinutes(30), AllowClientPublish = true },
            configureApp: live.Install);

        var clients = new List<ChaosClient>();
        try
        {
            for (var i = 0; i < ClientCount; i++)
            {
                var first = Kinds[i % Kinds.Length];
                var client = new HeraldClient(Clients.Options(server) with
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

            // Publishers: 3 tasks share one counter, so together they publish exactly Total.
            var next = 0;
            var publishers = Enumerable.Range(0, PublisherCount).Select(p => Task.Run(async () =>
            {
                int n;
                while ((n = Interlocked.Increment(ref next)) <= Total)
                {
                    await server.PublishAsync(Channel, $$"""{"p":{{p}},"n":{{n}}}""");
                }
            })).ToArray();
            var publishing = Task.WhenAll(publishers);

            // The chaos driver: random pacing, random victim, random kind of trouble, until the publishers are done.
            var random = new Random(Seed);
            var stats = new ChaosStats();
            var switches = new List<Task>();
            while (!publishing.IsCompleted)
            {
                await Task.Delay(random.Next(5, 40)); // pacing, not synchronisation
                var victim = clients[random.Next(clients.Count)];
                switch (random.Next(4))
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
                    default:
                        if (!victim.Switching)
                        {
                            var to = Kinds[random.Next(Kinds.Length)];
                            stats.Switches++;
                            switches.Add(victim.SwitchAsync(to, TimeSpan.FromSeconds(10)));
                        }
                        break;
                }
            }
            await publishing.WaitAsync(Timeout);
            await Task.WhenAll(switches).WaitAsync(Timeout);

            await Wait.UntilAsync(() => clients.All(c => c.Count >= Total || c.Failed), Timeout,
                $"every client to hold {Total} offsets (have {string.Join(", ", clients.Select(c => c.Count))})");
            clock.Stop();

            var reconnects = clients.Sum(c => c.Reconnects);
            var recoveryFailures = clients.Sum(c => c.RecoveryFailures);
            Report($"chaos: {ClientCount} clients, {PublisherCount} publishers, {Total} publications, seed {Seed}, {clock.Elapsed.TotalSeconds:0.0} s");
            Report($"chaos: forced drops: {stats.SocketAborts} client socket aborts (WebSocket), {stats.RequestCancels} cancelled poll requests, "
                + $"{stats.ServerClosesWebSocket + stats.ServerClosesPoll} server-side aborts ({stats.ServerClosesWebSocket} /ws, {stats.ServerClosesPoll} /poll); "
                + $"{stats.Switches} transport switches ({clients.Sum(c => c.SwitchesSuperseded)} did not land: fell back after a drop)");
            Report($"chaos: recoveries (reconnects that resumed with since): {reconnects}; recovered:false reports: {recoveryFailures}");
            Report($"chaos: per client reconnects: {string.Join(" ", clients.Select(c => c.Reconnects))}");

            var expected = Enumerable.Range(1, Total).Select(i => (ulong)i).ToList();
            for (var i = 0; i < clients.Count; i++)
            {
                Assert.True(clients[i].Error is null, $"client {i}: {clients[i].Error}");
                Assert.True(expected.SequenceEqual(clients[i].Offsets), $"client {i} did not get 1..{Total} exactly once in order ({clients[i].Count} offsets)");
            }
            Assert.Equal(0, recoveryFailures);
            Assert.True(stats.SocketAborts > 0 && stats.RequestCancels > 0 && stats.ServerClosesWebSocket + stats.ServerClosesPoll > 0 && stats.Switches > 0,
                "every kind of chaos should have happened at least once");
            Assert.True(reconnects >= stats.SocketAborts, $"{reconnects} reconnects for {stats.SocketAborts} socket aborts");
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.Client.DisposeAsync();
            }
        }
    }

    private void Report(string line)
    {
        output.WriteLine(line);
        Console.WriteLine(line);
    }

    private sealed class ChaosStats
    {
        public int SocketAborts { get; set; }

        public int RequestCancels { get; set; }

        public int ServerClosesWebSocket { get; set; }

        public int ServerClosesPoll { get; set; }

        public int Switches { get; set; }
    }

    /// <summary>One client: reads its subscription into a list of offsets and counts its reconnects.</summary>
    private sealed class ChaosClient
    {
        private readonly List<ulong> _offsets = new(Total);
        private readonly Lock _gate = new();
        private int _connects;
        private int _recoveryFailures;
        private int _switching;
        private int _superseded;
        private volatile string? _error;
        private Task? _reading;

        public ChaosClient(HeraldClient client)
        {
            Client = client;
            client.StateChanged += (_, e) =>
            {
                if (e.State == HeraldConnectionState.Connected)
                {
                    Interlocked.Increment(ref _connects);
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

        public bool Failed => _error is not null || _reading is { IsCompleted: true };

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

        public void Start(HeraldSubscription subscription) => _reading = Task.Run(async () =>
        {
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

        /// <summary>Switches that did not land: a drop during the switch made the client fall back to another transport.</summary>
        public int SwitchesSuperseded => Volatile.Read(ref _superseded);

        public async Task SwitchAsync(HeraldTransport to, TimeSpan timeout)
        {
            Interlocked.Exchange(ref _switching, 1);
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await Client.SwitchTransportAsync(to, cts.Token);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                // SwitchTransportAsync only returns once connected over `to`; if the attempt on `to` was dropped and
                // the client fell back to (and stayed on) another transport, it never does. Delivery is what is checked.
                Interlocked.Increment(ref _superseded);
            }
            finally
            {
                Interlocked.Exchange(ref _switching, 0);
            }
        }
    }

    /// <summary>Tracks the server's live /ws and /poll requests so that the test can abort one from the server side.</summary>
    private sealed class LiveRequests
    {
        private readonly ConcurrentDictionary<long, Entry> _live = new();
        private long _ids;

        public void Install(WebApplication app) => app.Use(async (context, next) =>
        {
            var path = context.Request.Path.Value;
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
