using System.Diagnostics;
using System.Text;
using Herald.Bench.Clients;

namespace Herald.Bench.Systems;

/// <summary>Transport names used in results.</summary>
internal static class Transports
{
    public const string WebSocket = "websocket";
    public const string LongPoll = "long-poll";
    public const string ShortPoll = "short-poll";
}

/// <summary>
/// One system under test: how to start it, which transports it serves to this generator, how a subscriber of each
/// transport talks to it, and how a publication is posted to it over HTTP (the same way for every system, so the
/// publishing side costs the same).
/// </summary>
internal abstract class BenchSystem(string name)
{
    public string Name { get; } = name;

    public abstract IReadOnlyList<string> Transports { get; }

    public abstract ProcessStartInfo CreateStart(string root, int port, string workDir);

    public abstract BenchClient CreateClient(string transport, ClientContext context, string channel, TimeSpan shortPollInterval);

    public abstract HttpRequestMessage CreatePublish(string channel, string payload);

    /// <summary>Whether the system runs as several nodes on one Redis here (the multinode scenario).</summary>
    public virtual bool ScalesOutOnRedis => false;

    /// <summary>
    /// Whether the system has latest-value channels (a subscriber that falls behind gets the newest message and a notice
    /// of what it skipped, instead of every message or a disconnect): Herald's <c>Conflate</c> namespaces. None of the
    /// peers here has them, so the conflate scenario runs Herald only.
    /// </summary>
    public virtual bool HasLatestValueChannels => false;

    /// <summary>How to start one node of several sharing the Redis at <paramref name="redisConfiguration"/> (host:port,…).</summary>
    public virtual ProcessStartInfo CreateNodeStart(string root, int port, string workDir, string redisConfiguration) =>
        throw new NotSupportedException($"{Name} has no Redis scale-out mode here");

    public static IReadOnlyList<BenchSystem> All { get; } =
        [new HeraldSystem(), new SignalRSystem(), new SocketIoSystem(), new NchanSystem(), new KestrelFloorSystem(raw: false), new KestrelFloorSystem(raw: true)];

    /// <summary>
    /// Systems run only when named with <c>--systems</c>: <c>kestrel-socket</c>, the floor of a transport that owns the
    /// socket (issue 14's question whether one would reach Nchan's cost per delivery), measured in scenario (d).
    /// </summary>
    public static IReadOnlyList<BenchSystem> Optional { get; } = [new KestrelFloorSystem(raw: true, socket: true)];

    public static BenchSystem Find(string name) =>
        All.Concat(Optional).FirstOrDefault(s => s.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown system '{name}'; known: {string.Join(", ", All.Concat(Optional).Select(s => s.Name))}");

    protected static ProcessStartInfo Dotnet(string dll, int port)
    {
        var start = new ProcessStartInfo("dotnet") { ArgumentList = { dll, "--urls", $"http://127.0.0.1:{port}" } };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["DOTNET_TieredPGO"] = "1";
        return start;
    }

    protected static ByteArrayContent Text(string payload, string mediaType = "text/plain") =>
        new(Encoding.UTF8.GetBytes(payload)) { Headers = { ContentType = new(mediaType) } };

    protected BenchClient Unsupported(string transport) => throw new NotSupportedException($"{Name} has no {transport} client here");
}

/// <summary>Herald itself: the standalone server, anonymous clients, limits raised past what the bench opens.</summary>
internal sealed class HeraldSystem() : BenchSystem("herald")
{
    public const string ApiKey = "bench-api-key-0123456789";

    public override IReadOnlyList<string> Transports { get; } = [Systems.Transports.WebSocket, Systems.Transports.LongPoll, Systems.Transports.ShortPoll];

    public override ProcessStartInfo CreateStart(string root, int port, string workDir)
    {
        var start = Dotnet(Path.Combine(root, "src/Herald.Server/bin/Release/net10.0/herald.dll"), port);
        start.Environment["Herald__AllowAnonymous"] = "true";
        start.Environment["Herald__ApiKey"] = ApiKey;
        start.Environment["Herald__MaxConnections"] = "1000000";
        start.Environment["Herald__MaxConnectionsPerIp"] = "1000000";
        start.Environment["Herald__MaxHttpRequestsPerSecondPerIp"] = "10000000";
        // The same recovery window as Nchan's message buffer (bench/peers/nchan): 200 publications per channel.
        start.Environment["Herald__Namespaces__default__HistorySize"] = "200";
        return start;
    }

    public override BenchClient CreateClient(string transport, ClientContext context, string channel, TimeSpan shortPollInterval) => transport switch
    {
        Systems.Transports.WebSocket => new HeraldWebSocketClient(context, channel),
        Systems.Transports.LongPoll => new HeraldPollingClient(context, channel, shortInterval: null, longWait: TimeSpan.FromSeconds(25)),
        Systems.Transports.ShortPoll => new HeraldPollingClient(context, channel, shortPollInterval, TimeSpan.Zero),
        _ => Unsupported(transport),
    };

    public override HttpRequestMessage CreatePublish(string channel, string payload) => Publish(channel, payload);

    /// <summary>Herald's publish API: <c>POST /api/publish {"channel":…,"data":…}</c> with the API key.</summary>
    public static HttpRequestMessage Publish(string channel, string payload) => new(HttpMethod.Post, "api/publish")
    {
        Headers = { Authorization = new("Bearer", ApiKey) },
        Content = Text($"{{\"channel\":\"{channel}\",\"data\":\"{payload}\"}}", "application/json"),
    };

    public override bool ScalesOutOnRedis => true;

    public override bool HasLatestValueChannels => true;

    /// <summary>The same server with <c>Herald:Redis:Configuration</c> set: history, fan-out and presence in Redis.</summary>
    public override ProcessStartInfo CreateNodeStart(string root, int port, string workDir, string redisConfiguration)
    {
        var start = CreateStart(root, port, workDir);
        start.Environment["Herald__Redis__Configuration"] = redisConfiguration;
        return start;
    }
}

/// <summary>ASP.NET Core SignalR, groups as channels (bench/peers/signalr).</summary>
internal sealed class SignalRSystem() : BenchSystem("signalr")
{
    public override IReadOnlyList<string> Transports { get; } = [Systems.Transports.WebSocket];

    public override ProcessStartInfo CreateStart(string root, int port, string workDir) =>
        Dotnet(Path.Combine(root, "bench/peers/signalr/bin/Release/net10.0/herald-bench-signalr.dll"), port);

    public override BenchClient CreateClient(string transport, ClientContext context, string channel, TimeSpan shortPollInterval) =>
        transport == Systems.Transports.WebSocket ? new SignalRWebSocketClient(context, channel) : Unsupported(transport);

    public override HttpRequestMessage CreatePublish(string channel, string payload) =>
        new(HttpMethod.Post, $"publish/{channel}") { Content = Text(payload) };

    public override bool ScalesOutOnRedis => true;

    /// <summary>The same peer with SignalR's Redis backplane (<c>--redis</c>, Microsoft.AspNetCore.SignalR.StackExchangeRedis).</summary>
    public override ProcessStartInfo CreateNodeStart(string root, int port, string workDir, string redisConfiguration)
    {
        var start = CreateStart(root, port, workDir);
        start.ArgumentList.Add("--redis");
        start.ArgumentList.Add(redisConfiguration);
        return start;
    }
}

/// <summary>Socket.IO 4 on Node, rooms as channels (bench/peers/socketio).</summary>
internal sealed class SocketIoSystem() : BenchSystem("socketio")
{
    public override IReadOnlyList<string> Transports { get; } = [Systems.Transports.WebSocket];

    public override ProcessStartInfo CreateStart(string root, int port, string workDir)
    {
        var start = new ProcessStartInfo("node") { ArgumentList = { Path.Combine(root, "bench/peers/socketio/server.js") } };
        start.Environment["PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["NODE_ENV"] = "production";
        return start;
    }

    public override BenchClient CreateClient(string transport, ClientContext context, string channel, TimeSpan shortPollInterval) =>
        transport == Systems.Transports.WebSocket ? new SocketIoWebSocketClient(context, channel) : Unsupported(transport);

    public override HttpRequestMessage CreatePublish(string channel, string payload) =>
        new(HttpMethod.Post, $"publish/{channel}") { Content = Text(payload) };
}

/// <summary>nginx with Debian's Nchan module (bench/peers/nchan): WebSocket and long-poll subscribers.</summary>
internal sealed class NchanSystem() : BenchSystem("nchan")
{
    public override IReadOnlyList<string> Transports { get; } = [Systems.Transports.WebSocket, Systems.Transports.LongPoll];

    public override ProcessStartInfo CreateStart(string root, int port, string workDir) => new("bash")
    {
        ArgumentList = { Path.Combine(root, "bench/peers/nchan/run.sh"), port.ToString(System.Globalization.CultureInfo.InvariantCulture), Path.Combine(workDir, $"nchan-{port}") },
    };

    public override BenchClient CreateClient(string transport, ClientContext context, string channel, TimeSpan shortPollInterval) => transport switch
    {
        Systems.Transports.WebSocket => new NchanWebSocketClient(context, channel),
        Systems.Transports.LongPoll => new NchanLongPollClient(context, channel),
        _ => Unsupported(transport),
    };

    public override HttpRequestMessage CreatePublish(string channel, string payload) =>
        new(HttpMethod.Post, $"pub/{channel}") { Content = Text(payload) };
}

/// <summary>
/// A floor, not a product (bench/peers/kestrel): the least a .NET server on Kestrel does to serve Herald's WebSocket
/// fan-out, spoken to with Herald's own client and publish API. <c>kestrel</c> is ASP.NET Core's <c>UseWebSockets</c>
/// and <c>WebSocket.SendAsync</c>; <c>kestrel-raw</c> answers the upgrade in a connection middleware and writes
/// pre-built frames into the transport, below Kestrel's HTTP layer; <c>kestrel-socket</c> (optional) sends them on the
/// socket itself.
/// </summary>
internal sealed class KestrelFloorSystem(bool raw, bool socket = false) : BenchSystem(socket ? "kestrel-socket" : raw ? "kestrel-raw" : "kestrel")
{
    public override IReadOnlyList<string> Transports { get; } = [Systems.Transports.WebSocket];

    public override ProcessStartInfo CreateStart(string root, int port, string workDir)
    {
        var start = Dotnet(Path.Combine(root, "bench/peers/kestrel/bin/Release/net10.0/herald-bench-kestrel.dll"), port);
        if (raw || socket)
        {
            start.ArgumentList.Add(socket ? "--socket" : "--raw");
        }
        return start;
    }

    public override BenchClient CreateClient(string transport, ClientContext context, string channel, TimeSpan shortPollInterval) =>
        transport == Systems.Transports.WebSocket ? new HeraldWebSocketClient(context, channel) : Unsupported(transport);

    public override HttpRequestMessage CreatePublish(string channel, string payload) => HeraldSystem.Publish(channel, payload);
}
