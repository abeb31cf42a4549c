using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Redis.Tests;

/// <summary>
/// Three real <c>herald</c> server processes (the build of src/Herald.Server) on one redis-server of their own, each on its
/// own loopback port: what a deployment runs. A node can be killed by its PID mid-test; the next test starts it again.
/// </summary>
public sealed class HeraldProcessCluster : IAsyncLifetime
{
    public const string ApiKey = "process-cluster-key";
    public static readonly TimeSpan PresenceNodeTimeout = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    private readonly RedisServer _redis = new(persistent: false);
    private readonly string _prefix = "procs-" + Guid.NewGuid().ToString("N")[..12];

    public HeraldNodeProcess[] Nodes { get; } = new HeraldNodeProcess[3];

    public async Task InitializeAsync()
    {
        try
        {
            await _redis.StartAsync();
            var dll = LocateServerDll();
            for (var i = 0; i < Nodes.Length; i++)
            {
                Nodes[i] = new HeraldNodeProcess("ABC"[i].ToString(), dll, Environment());
            }
            await Task.WhenAll(Nodes.Select(n => n.StartAsync(StartTimeout)));
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts again every node a test killed (on a new free port).</summary>
    public Task EnsureAllRunningAsync() =>
        Task.WhenAll(Nodes.Where(n => !n.IsRunning).Select(n => n.StartAsync(StartTimeout)));

    public Task DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            node?.Dispose();
        }
        _redis.Dispose();
        return Task.CompletedTask;
    }

    private Dictionary<string, string> Environment() => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Production",
        ["DOTNET_ENVIRONMENT"] = "Production",
        ["Logging__LogLevel__Default"] = "Warning",
        ["Herald__Redis__Configuration"] = _redis.Configuration,
        ["Herald__Redis__Prefix"] = _prefix,
        ["Herald__AllowAnonymous"] = "true",
        ["Herald__ApiKey"] = ApiKey,
        ["Herald__PresenceNodeTimeout"] = PresenceNodeTimeout.ToString("c", CultureInfo.InvariantCulture),
        // The tests drive every node hard from one IP.
        ["Herald__MaxCommandsPerSecond"] = "1000000",
        ["Herald__MaxPublishesPerSecond"] = "1000000",
        ["Herald__MaxHttpRequestsPerSecondPerIp"] = "10000000",
        ["Herald__MaxConnectionsPerIp"] = "10000000",
        ["Herald__Namespaces__chat__HistorySize"] = "100000",
        ["Herald__Namespaces__chat__HistoryTtl"] = "00:10:00",
        ["Herald__Namespaces__chat__AllowClientPublish"] = "true",
        ["Herald__Namespaces__chat__Presence"] = "true",
    };

    /// <summary>
    /// HERALD_DLL, or the server build of this test run's configuration: src/Herald.Server/bin/{Release|Debug}/net10.0/herald.dll
    /// under the directory holding Herald.slnx (found by walking up from the test assembly).
    /// </summary>
    private static string LocateServerDll()
    {
        if (System.Environment.GetEnvironmentVariable("HERALD_DLL") is { Length: > 0 } given)
        {
            return File.Exists(given) ? given : throw new InvalidOperationException($"HERALD_DLL={given} does not exist");
        }
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Herald.slnx")))
        {
            directory = directory.Parent;
        }
        if (directory is null)
        {
            throw new InvalidOperationException($"Herald.slnx not found above {AppContext.BaseDirectory}; set HERALD_DLL");
        }
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(directory.FullName, "src", "Herald.Server", "bin", configuration, "net10.0", "herald.dll");
        return File.Exists(dll)
            ? dll
            : throw new InvalidOperationException($"server build not found at {dll}; run 'dotnet build Herald.slnx -c {configuration}' or set HERALD_DLL");
    }
}

/// <summary>One <c>dotnet herald.dll</c> process on a free loopback port; killed by its PID.</summary>
public sealed class HeraldNodeProcess(string name, string dll, IReadOnlyDictionary<string, string> environment) : IDisposable
{
    private readonly StringBuilder _output = new();
    private Process? _process;

    public string Name { get; } = name;

    public int Port { get; private set; }

    public Uri BaseUri => new($"http://127.0.0.1:{Port}");

    public Uri WebSocketUri => new($"ws://127.0.0.1:{Port}/ws");

    /// <summary>Without credentials (polls).</summary>
    public HttpClient Http { get; private set; } = new();

    /// <summary>With the API key (server API).</summary>
    public HttpClient Api { get; private set; } = new();

    public bool IsRunning => _process is { HasExited: false };

    public int Pid => _process?.Id ?? 0;

    /// <summary>What the process wrote, for failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public async Task StartAsync(TimeSpan timeout)
    {
        for (var attempt = 1; ; attempt++)
        {
            Kill();
            Port = FreePort();
            var start = new ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = Path.GetDirectoryName(dll)!,
            };
            foreach (var arg in new[] { dll, "--urls", $"http://127.0.0.1:{Port}" })
            {
                start.ArgumentList.Add(arg);
            }
            foreach (var (key, value) in environment)
            {
                start.Environment[key] = value;
            }
            _process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
            // Should the test host end without disposing the fixture, the node must not outlive it.
            var pid = _process.Id;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => KillPid(pid);
            _process.OutputDataReceived += (_, e) => Append(e.Data);
            _process.ErrorDataReceived += (_, e) => Append(e.Data);
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            Http.Dispose();
            Api.Dispose();
            Http = new HttpClient { BaseAddress = BaseUri };
            Api = new HttpClient { BaseAddress = BaseUri };
            Api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", HeraldProcessCluster.ApiKey);
            if (await WaitHealthyAsync(timeout))
            {
                return;
            }
            // The port found free may have been taken before the server bound it: try another.
            if (attempt == 3)
            {
                var output = Output;
                Kill();
                throw new InvalidOperationException($"node {Name} (dotnet {dll} on port {Port}) did not answer /healthz 200 within {timeout.TotalSeconds} s:\n{output}");
            }
        }
    }

    /// <summary>Kills the process by its PID, as a crash (<c>kill -9</c>) would.</summary>
    public void Kill()
    {
        if (_process is { } process)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill();
                    process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            process.Dispose();
            _process = null;
        }
    }

    private static void KillPid(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.Kill();
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
        }
    }

    public void Dispose()
    {
        Kill();
        Http.Dispose();
        Api.Dispose();
    }

    /// <summary>Publishes <paramref name="json"/> through this node's server API; returns its offset.</summary>
    public async Task<ulong> PublishAsync(string channel, string json)
    {
        using var response = await Api.PostAsync("/api/publish", new StringContent($$"""{"channel":"{{channel}}","data":{{json}}}"""));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"POST /api/publish on node {Name} answered {(int)response.StatusCode}: {text}");
        using var position = JsonDocument.Parse(text);
        return position.RootElement.GetProperty("offset").GetUInt64();
    }

    /// <summary>Opens a WebSocket and sends <c>connect</c>; returns the client and its client id.</summary>
    public async Task<(WsClient Client, string ClientId)> ConnectAsync()
    {
        var client = await WsClient.OpenAsync(WebSocketUri);
        var reply = await client.CommandAsync("""{"op":"connect"}""");
        Assert.True(reply.TryGetProperty("result", out var result), $"connect on node {Name} failed: {reply}");
        return (client, result.GetProperty("client").GetString()!);
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private async Task<bool> WaitHealthyAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && _process is { HasExited: false })
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                using var response = await Http.GetAsync("/healthz", cts.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return true;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
            {
            }
            await Task.Delay(50);
        }
        return false;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>Three herald processes on one Redis: fan-out, polling, presence, history and a crashed node, end to end.</summary>
[Collection(RedisCollection.Name)]
public sealed class ProcessClusterTests(HeraldProcessCluster cluster) : IClassFixture<HeraldProcessCluster>, IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private HeraldNodeProcess A => cluster.Nodes[0];
    private HeraldNodeProcess B => cluster.Nodes[1];
    private HeraldNodeProcess C => cluster.Nodes[2];

    public Task InitializeAsync() => cluster.EnsureAllRunningAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private static string NewChannel(string what) => $"chat:{what}-{Guid.NewGuid():N}";

    [Fact]
    public async Task WebSocketSubscriberOnA_SeesEveryOffsetOnceInOrder_PublishedThroughBAndC()
    {
        var channel = NewChannel("fanout");
        const int PerPublisher = 60;
        var (subscriber, _) = await A.ConnectAsync();
        await using var _subscriber = subscriber;
        var subscribed = (await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""")).GetProperty("result");
        Assert.Equal(0UL, subscribed.GetProperty("offset").GetUInt64());

        var publishing = Task.WhenAll(
            Task.Run(() => PublishManyAsync([B], channel, 0, PerPublisher)),
            Task.Run(() => PublishManyAsync([C], channel, 1, PerPublisher)));

        var data = new List<JsonElement>();
        for (var expected = 1UL; expected <= 2 * PerPublisher; expected++)
        {
            var pub = (await NextPushAsync(subscriber, $"offset {expected} on A")).GetProperty("push").GetProperty("pub");
            Assert.Equal(expected, pub.GetProperty("offset").GetUInt64());
            data.Add(pub.GetProperty("data").Clone());
        }
        await Wait.ForAsync(publishing.ContinueWith(t => t, TaskScheduler.Default), Deadline, "publishers through B and C");
        await publishing;
        AssertEachPublisherInOrder(data, 2, PerPublisher);
        Assert.False(subscriber.TryReadPush(out var extra), $"a push after the last offset: {extra}");
    }

    [Fact]
    public async Task LongAndShortPollers_RoundRobinOverNodes_SeeEveryOffsetOnce_WhilePublishersUseAllThree()
    {
        var channel = NewChannel("polls");
        const int Publishers = 3, PerPublisher = 40, Total = Publishers * PerPublisher;
        HeraldNodeProcess[] nodes = [A, B, C];
        var longPoller = new ProcessPollFollower(channel);
        var shortPoller = new ProcessPollFollower(channel);
        await longPoller.PollAsync(A, 0);
        await shortPoller.PollAsync(B, 0);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        async Task FollowAsync(ProcessPollFollower follower, double wait, int first)
        {
            for (var i = first; follower.Offset < Total; i++)
            {
                Assert.False(stop.IsCancellationRequested, $"{(wait > 0 ? "long" : "short")} poller stuck at offset {follower.Offset} of {Total}");
                await follower.PollAsync(nodes[i % 3], wait);
                if (wait == 0)
                {
                    await Task.Delay(20); // pacing, not synchronisation: a short poller polls on an interval
                }
            }
        }
        var following = Task.WhenAll(Task.Run(() => FollowAsync(longPoller, 2, 1)), Task.Run(() => FollowAsync(shortPoller, 0, 2)));
        await Task.WhenAll(Enumerable.Range(0, Publishers).Select(p => Task.Run(() => PublishManyAsync(nodes, channel, p, PerPublisher))));
        await Wait.ForAsync(following.ContinueWith(t => t, TaskScheduler.Default), TimeSpan.FromSeconds(20), "both pollers to reach the last offset");
        await following;

        AssertEachPublisherInOrder(longPoller.Data, Publishers, PerPublisher);
        AssertEachPublisherInOrder(shortPoller.Data, Publishers, PerPublisher);
        Assert.True(longPoller.Polls > 3 && shortPoller.Polls > 3, $"polls: long {longPoller.Polls}, short {shortPoller.Polls} (every node should have been asked)");
    }

    [Fact]
    public async Task PresenceListedFromC_IncludesAWebSocketClientOnA_AndAPollingClientOnB()
    {
        var channel = NewChannel("presence");
        var (ws, wsId) = await A.ConnectAsync();
        await using var _ws = ws;
        Assert.True((await ws.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""")).TryGetProperty("result", out _));
        var pollerId = "poller-" + Guid.NewGuid().ToString("N")[..8];
        using (var poll = await B.Http.GetAsync($"/poll?channel={channel}&client={pollerId}"))
        {
            Assert.True(poll.StatusCode == HttpStatusCode.OK, $"poll with client id on B answered {(int)poll.StatusCode}: {await poll.Content.ReadAsStringAsync()}");
        }

        var listed = await PresenceAsync(C, channel);
        Assert.True(listed.SetEquals([wsId, pollerId]), $"presence from C: [{string.Join(", ", listed)}], expected [{wsId}, {pollerId}]");
        // And the same from the other two nodes.
        Assert.True((await PresenceAsync(A, channel)).SetEquals(listed), "presence from A differs from C's");
        Assert.True((await PresenceAsync(B, channel)).SetEquals(listed), "presence from B differs from C's");
    }

    [Fact]
    public async Task HistoryIsTheSameFromEveryNode()
    {
        var channel = NewChannel("history");
        HeraldNodeProcess[] nodes = [A, B, C];
        const int PerPublisher = 20;
        await Task.WhenAll(Enumerable.Range(0, 3).Select(p => Task.Run(() => PublishManyAsync(nodes, channel, p, PerPublisher))));

        var answers = new List<string>();
        foreach (var node in nodes)
        {
            var text = await node.Api.GetStringAsync($"/api/channels/{channel}/history");
            using var history = JsonDocument.Parse(text);
            Assert.Equal(60UL, history.RootElement.GetProperty("offset").GetUInt64());
            var offsets = history.RootElement.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64());
            Assert.Equal(Enumerable.Range(1, 60).Select(i => (ulong)i), offsets);
            answers.Add(text);
        }
        Assert.True(answers.Distinct().Count() == 1, $"history differs between nodes:\nA {answers[0]}\nB {answers[1]}\nC {answers[2]}");
    }

    [Fact]
    public async Task NodeKilledMidStream_ItsWebSocketClientMovesToAnotherNodeAndSeesEveryOffsetOnce_AndItsPresenceExpires()
    {
        var channel = NewChannel("killed");
        var (first, firstId) = await A.ConnectAsync();
        var subscribed = (await first.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""")).GetProperty("result");
        var epoch = subscribed.GetProperty("epoch").GetString()!;
        var seen = new List<ulong>();
        var lastSeen = 0L;

        // Publishers keep publishing through the nodes that survive until told to stop; the highest offset answered is the end.
        using var stopPublishing = new CancellationTokenSource();
        var highest = 0L;
        var publishers = Enumerable.Range(0, 2).Select(p => Task.Run(async () =>
        {
            for (var i = 0; !stopPublishing.IsCancellationRequested; i++)
            {
                var offset = await (p == 0 ? B : C).PublishAsync(channel, $$"""{"p":{{p}},"i":{{i}}}""");
                InterlockedMax(ref highest, (long)offset);
            }
        })).ToArray();

        // Reads pushes in order from one connection until it closes.
        async Task ReadAsync(WsClient client)
        {
            while (true)
            {
                JsonElement push;
                try
                {
                    push = await client.NextPushAsync(Deadline);
                }
                catch (System.Threading.Channels.ChannelClosedException)
                {
                    return; // the node went away, or the test closed the connection
                }
                var offset = push.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64();
                Assert.True(offset == (ulong)Interlocked.Read(ref lastSeen) + 1, $"offset {offset} after {lastSeen} (a gap or a duplicate)");
                seen.Add(offset);
                Interlocked.Exchange(ref lastSeen, (long)offset);
            }
        }

        WsClient? second = null;
        try
        {
            // The subscriber on A is listed from B before the crash.
            Assert.Contains(firstId, await PresenceAsync(B, channel));
            var readingA = ReadAsync(first);
            await Wait.UntilAsync(() => Interlocked.Read(ref lastSeen) >= 30 || readingA.IsCompleted, Deadline, "30 offsets on A before the kill");
            Assert.False(readingA.IsCompleted, $"A's WebSocket closed before the kill ({readingA.Exception?.InnerException?.Message})");
            var killedPid = A.Pid;
            A.Kill();
            var killedAt = DateTime.UtcNow;
            await Wait.ForAsync(readingA.ContinueWith(t => t, TaskScheduler.Default), Deadline, $"A's WebSocket (node PID {killedPid}, killed) to close");
            await readingA;
            var beforeReconnect = (ulong)Interlocked.Read(ref lastSeen);

            // The client reconnects to the next node and resubscribes from the last offset it saw.
            (second, _) = await B.ConnectAsync();
            var resubscribed = (await second.CommandAsync($$$"""{"op":"subscribe","channel":"{{{channel}}}","since":{"offset":{{{beforeReconnect}}},"epoch":"{{{epoch}}}"}}""")).GetProperty("result");
            Assert.True(resubscribed.GetProperty("recovered").GetBoolean(), $"resubscribe on B with since {beforeReconnect}: {resubscribed}");
            Assert.Equal(epoch, resubscribed.GetProperty("epoch").GetString());
            foreach (var pub in resubscribed.GetProperty("publications").EnumerateArray())
            {
                var offset = pub.GetProperty("offset").GetUInt64();
                Assert.True(offset == (ulong)lastSeen + 1, $"recovered offset {offset} after {lastSeen}");
                seen.Add(offset);
                Interlocked.Exchange(ref lastSeen, (long)offset);
            }

            // Let the stream run on the survivors for a while, then stop it and read up to its last offset.
            var afterReconnect = Interlocked.Read(ref lastSeen);
            var readingB = ReadAsync(second);
            await Wait.UntilAsync(() => Interlocked.Read(ref lastSeen) >= afterReconnect + 30 || readingB.IsCompleted, Deadline, "30 more offsets on B after the reconnection");
            await stopPublishing.CancelAsync();
            await Wait.ForAsync(Task.WhenAll(publishers).ContinueWith(t => t, TaskScheduler.Default), Deadline, "publishers to stop");
            await Task.WhenAll(publishers);
            await Wait.UntilAsync(() => Interlocked.Read(ref lastSeen) >= Interlocked.Read(ref highest) || readingB.IsCompleted, Deadline, $"every offset up to {Interlocked.Read(ref highest)} on B");
            Assert.False(readingB.IsCompleted, $"B's WebSocket closed early at offset {lastSeen} ({readingB.Exception?.InnerException?.Message})");
            await second.DisposeAsync();
            await Wait.ForAsync(readingB.ContinueWith(t => t, TaskScheduler.Default), Deadline, "B's reader to end");
            await readingB;
            Assert.Equal(Enumerable.Range(1, (int)highest).Select(i => (ulong)i), seen);
            Assert.True(beforeReconnect < (ulong)highest, "the kill came after the stream ended: not mid-stream");

            // A's client is no longer listed once A has stopped refreshing its entries for PresenceNodeTimeout.
            var slack = TimeSpan.FromSeconds(2);
            var gone = killedAt + HeraldProcessCluster.PresenceNodeTimeout + slack;
            while ((await PresenceAsync(C, channel)).Contains(firstId))
            {
                Assert.True(DateTime.UtcNow < gone, $"client {firstId} of the killed node A is still listed from C {(DateTime.UtcNow - killedAt).TotalSeconds:0.0} s after the kill (PresenceNodeTimeout {HeraldProcessCluster.PresenceNodeTimeout.TotalSeconds} s + {slack.TotalSeconds} s)");
                await Task.Delay(100);
            }
        }
        finally
        {
            await stopPublishing.CancelAsync();
            await first.DisposeAsync();
            if (second is not null)
            {
                await second.DisposeAsync();
            }
        }
    }

    private static async Task<JsonElement> NextPushAsync(WsClient client, string what)
    {
        try
        {
            return await client.NextPushAsync(Deadline);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"no push within {Deadline.TotalSeconds} s: {what}");
            throw;
        }
    }

    private static async Task<HashSet<string>> PresenceAsync(HeraldNodeProcess node, string channel)
    {
        using var response = await node.Api.GetAsync($"/api/channels/{channel}/presence");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"presence on node {node.Name} answered {(int)response.StatusCode}: {text}");
        using var presence = JsonDocument.Parse(text);
        return presence.RootElement.GetProperty("presence").EnumerateObject().Select(p => p.Name).ToHashSet();
    }

    /// <summary>Publishes <c>{"p":publisher,"i":index}</c> for index 0 to <paramref name="count"/> − 1, the i-th through node (publisher + i) mod n.</summary>
    private static async Task PublishManyAsync(IReadOnlyList<HeraldNodeProcess> nodes, string channel, int publisher, int count)
    {
        for (var i = 0; i < count; i++)
        {
            await nodes[(publisher + i) % nodes.Count].PublishAsync(channel, $$"""{"p":{{publisher}},"i":{{i}}}""");
        }
    }

    private static void AssertEachPublisherInOrder(IReadOnlyList<JsonElement> data, int publishers, int perPublisher)
    {
        Assert.Equal(publishers * perPublisher, data.Count);
        for (var p = 0; p < publishers; p++)
        {
            var own = data.Where(d => d.GetProperty("p").GetInt32() == p).Select(d => d.GetProperty("i").GetInt32());
            Assert.Equal(Enumerable.Range(0, perPublisher), own);
        }
    }

    private static void InterlockedMax(ref long location, long value)
    {
        var current = Interlocked.Read(ref location);
        while (value > current)
        {
            var previous = Interlocked.CompareExchange(ref location, value, current);
            if (previous == current)
            {
                return;
            }
            current = previous;
        }
    }
}

/// <summary>
/// Follows one channel by polling herald processes: every request carries the cursor of the previous answer. Checks each
/// answer as it comes (same epoch, <c>recovered:true</c>, offsets following the cursor with no gap and no duplicate).
/// </summary>
public sealed class ProcessPollFollower(string channel)
{
    private readonly List<JsonElement> _data = [];
    private long _offset;
    private int _polls;

    public string? Epoch { get; private set; }

    public ulong Offset => (ulong)Interlocked.Read(ref _offset);

    public IReadOnlyList<JsonElement> Data => _data;

    public int Polls => Volatile.Read(ref _polls);

    public async Task PollAsync(HeraldNodeProcess node, double wait)
    {
        var poll = Interlocked.Increment(ref _polls);
        var url = Epoch is null
            ? $"/poll?channel={channel}"
            : $"/poll?channel={channel}&offset={Offset}&epoch={Epoch}&wait={wait.ToString(CultureInfo.InvariantCulture)}";
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(wait + 5));
        string text;
        HttpStatusCode status;
        try
        {
            using var response = await node.Http.GetAsync(url, timeout.Token);
            status = response.StatusCode;
            text = await response.Content.ReadAsStringAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            Assert.Fail($"poll #{poll} to node {node.Name} ({url}) got no answer within {wait + 5} s");
            throw;
        }
        Assert.True(status == HttpStatusCode.OK, $"poll #{poll} to node {node.Name} ({url}) answered {(int)status}: {text}");
        var answer = JsonDocument.Parse(text).RootElement.GetProperty("channels").GetProperty(channel).Clone();
        var epoch = answer.GetProperty("epoch").GetString();
        if (Epoch is null)
        {
            Epoch = epoch;
            Interlocked.Exchange(ref _offset, (long)answer.GetProperty("offset").GetUInt64());
            return;
        }
        Assert.True(epoch == Epoch, $"poll #{poll} to node {node.Name}: epoch {epoch}, expected {Epoch}");
        Assert.True(answer.GetProperty("recovered").GetBoolean(), $"poll #{poll} to node {node.Name} with cursor {Offset}: {text}");
        var offset = Offset;
        foreach (var pub in answer.GetProperty("publications").EnumerateArray())
        {
            var got = pub.GetProperty("offset").GetUInt64();
            Assert.True(got == offset + 1, $"poll #{poll} to node {node.Name} with cursor {Offset}: offset {got} follows {offset} (a gap or a duplicate)");
            _data.Add(pub.GetProperty("data"));
            offset = got;
        }
        Assert.Equal(offset, answer.GetProperty("offset").GetUInt64());
        Interlocked.Exchange(ref _offset, (long)offset);
    }
}
