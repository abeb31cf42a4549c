using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using Herald.Client.Tests.Infrastructure;

namespace Herald.Client.Tests.Nginx;

/// <summary>
/// Herald behind a real nginx configured with deploy/nginx/herald.conf: every transport end to end through the proxy,
/// recovery when the proxy itself dies and comes back, fallback through a proxy that refuses WebSocket upgrades, and
/// the forwarded client address honoured only from a trusted proxy.
/// </summary>
public sealed class NginxTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static TheoryData<HeraldTransport> AllTransports => new() { HeraldTransport.WebSocket, HeraldTransport.LongPoll, HeraldTransport.ShortPoll };

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task ThroughNginx_EveryTransportDelivers_AndRecoversWhatItMissedWhileTheProxyWasDown(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        await using var nginx = await NginxProxy.StartAsync([server.BaseUri]);
        await using var client = new HeraldClient(Clients.Options(server, transport) with { BaseUri = nginx.BaseUri });
        var failures = new ConcurrentQueue<HeraldRecoveryFailedEventArgs>();
        client.RecoveryFailed += (_, e) => failures.Enqueue(e);
        var states = new StateLog(client);
        await client.ConnectAsync();
        Assert.Equal(transport, client.Transport);

        var channel = $"chat:nginx-{transport}";
        var collector = new Collector(await client.SubscribeAsync(channel));
        for (var i = 1; i <= 20; i++)
        {
            await client.PublishAsync(channel, Clients.Json($$"""{"n":{{i}}}""")); // publishes through the proxy too
        }
        await collector.WaitForAsync(20, Timeout);

        // The proxy dies: every connection through it drops. What is published meanwhile goes straight to Herald.
        await nginx.KillAsync();
        for (var i = 21; i <= 40; i++)
        {
            await server.PublishAsync(channel, $$"""{"n":{{i}}}""");
        }
        await Wait.UntilAsync(() => states.Events.Any(e => e.State != HeraldConnectionState.Connected && states.Events.Count > 2), Timeout, $"the client notices the proxy is gone ({states})");
        await nginx.StartAsync();
        for (var i = 41; i <= 50; i++)
        {
            await server.PublishAsync(channel, $$"""{"n":{{i}}}""");
        }

        await collector.WaitForAsync(50, Timeout);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (ulong)i), collector.Offsets);
        Assert.Empty(failures);
        Assert.Equal(transport, client.Transport);
        if (transport == HeraldTransport.WebSocket)
        {
            // nginx logs a WebSocket only when it closes; Herald counts it while it is open.
            Assert.Equal(1, server.Node.Metrics.WebSocketConnections);
        }
        else
        {
            Assert.Contains("POST /cmd", nginx.AccessLog, StringComparison.Ordinal);
            Assert.Matches(@"""(GET|POST) /poll[^""]* HTTP/1\.1"" 200 ", nginx.AccessLog);
        }
    }

    [Fact]
    public async Task ThroughNginx_ALongPollHeldForMaxPollWait_IsAnsweredByHerald_NotTimedOutByTheProxy()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxPollWait = TimeSpan.FromSeconds(3));
        await using var nginx = await NginxProxy.StartAsync([server.BaseUri], conf => conf.Replace("proxy_read_timeout 75s;", "proxy_read_timeout 5s;", StringComparison.Ordinal));
        using var http = new HttpClient { BaseAddress = nginx.BaseUri, Timeout = Timeout };
        var first = await http.GetStringAsync("/poll?channel=chat:held");
        var epoch = System.Text.Json.JsonDocument.Parse(first).RootElement.GetProperty("channels").GetProperty("chat:held").GetProperty("epoch").GetString();
        var started = System.Diagnostics.Stopwatch.StartNew();
        using var held = await http.GetAsync($"/poll?channel=chat:held&offset=0&epoch={epoch}&wait=3");
        Assert.Equal(HttpStatusCode.OK, held.StatusCode);
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(2.5), $"the poll was held {started.Elapsed}");
    }

    [Fact]
    public async Task ThroughAProxyThatRefusesWebSocketUpgrades_TheClientFallsBackToLongPolling_AndLosesNothing()
    {
        await using var server = await TestServer.StartAsync();
        // The common misconfiguration: the upgrade headers are not passed on, so Herald sees a plain GET /ws.
        await using var nginx = await NginxProxy.StartAsync([server.BaseUri], conf => Without(conf, "    proxy_set_header Upgrade $http_upgrade;\n"));
        var options = Clients.Options(server) with { BaseUri = nginx.BaseUri };
        await using var client = new HeraldClient(options);
        var channel = "chat:no-upgrade";
        for (var i = 1; i <= 10; i++)
        {
            await server.PublishAsync(channel, $$"""{"n":{{i}}}""");
        }
        await client.ConnectAsync();
        Assert.Equal(HeraldTransport.LongPoll, client.Transport);
        Assert.DoesNotMatch(@"""GET /ws HTTP/1\.1"" 101 ", nginx.AccessLog);

        var collector = new Collector(await client.SubscribeAsync(channel, new SubscribeOptions { Since = new Protocol.StreamPosition(3, (await client.HistoryAsync(channel)).Head.Epoch) }), after: 3);
        for (var i = 11; i <= 30; i++)
        {
            await client.PublishAsync(channel, Clients.Json($$"""{"n":{{i}}}"""));
        }
        await collector.WaitForAsync(27, Timeout);
        Assert.Equal(Enumerable.Range(4, 27).Select(i => (ulong)i), collector.Offsets);
    }

    [Fact]
    public async Task ThroughNginx_WithItAsTrustedProxy_PerIpLimitsCountTheClientsAddress()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxConnectionsPerIp = 1;
            o.TrustedProxies.Add("127.0.0.1");
        });
        await using var nginx = await NginxProxy.StartAsync([server.BaseUri]);
        // nginx sees two clients, 127.0.0.1 and ::1; Herald sees one peer, nginx, and the forwarded addresses.
        using var v4 = await OpenAsync(nginx.BaseUri);
        using var v6 = await OpenAsync(nginx.BaseUriV6);
        Assert.Equal(HttpStatusCode.TooManyRequests, await RefusedAsync(nginx.BaseUriV6));
    }

    [Fact]
    public async Task ThroughNginx_WithoutTrustedProxies_AllClientsShareTheProxysAddress()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxConnectionsPerIp = 1);
        await using var nginx = await NginxProxy.StartAsync([server.BaseUri]);
        using var v4 = await OpenAsync(nginx.BaseUri);
        Assert.Equal(HttpStatusCode.TooManyRequests, await RefusedAsync(nginx.BaseUriV6));
    }

    [Fact]
    public async Task ThroughNginx_TwoNodesWithoutStickySessions_PollsAlternateNodes_AndLoseNothing()
    {
        await using var cluster = await TestServer.StartClusterAsync(2);
        await using var nginx = await NginxProxy.StartAsync(cluster.Nodes.Select(n => n.BaseUri));
        await using var client = new HeraldClient(Clients.Options(cluster.Nodes[0], HeraldTransport.ShortPoll) with { BaseUri = nginx.BaseUri });
        await client.ConnectAsync();
        var collector = new Collector(await client.SubscribeAsync("chat:two"));
        for (var i = 1; i <= 30; i++)
        {
            await cluster.Nodes[i % 2].PublishAsync("chat:two", $$"""{"n":{{i}}}""");
        }
        await collector.WaitForAsync(30, Timeout);
        Assert.Equal(Enumerable.Range(1, 30).Select(i => (ulong)i), collector.Offsets);
        // Round robin: both upstreams answered polls (nginx logs each upstream's address).
        Assert.All(cluster.Nodes, n => Assert.Contains(n.BaseUri.Authority, nginx.AccessLog, StringComparison.Ordinal));
    }

    [Fact]
    public void DeployDoc_ShowsTheTestedConfiguration_Unchanged()
    {
        var config = File.ReadAllText(NginxProxy.ConfigFile).ReplaceLineEndings("\n");
        var doc = File.ReadAllText(Path.Combine(Path.GetDirectoryName(NginxProxy.ConfigFile)!, "..", "..", "docs", "deploy.md")).ReplaceLineEndings("\n");
        Assert.Contains("```nginx\n" + config + "```", doc, StringComparison.Ordinal);
    }

    private static string Without(string conf, string line)
    {
        Assert.Contains(line, conf, StringComparison.Ordinal);
        return conf.Replace(line, "", StringComparison.Ordinal);
    }

    private static Uri WsUri(Uri baseUri) => new($"ws://{baseUri.Authority}/ws");

    private static async Task<ClientWebSocket> OpenAsync(Uri baseUri)
    {
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol("herald.json");
        using var timeout = new CancellationTokenSource(Timeout);
        await socket.ConnectAsync(WsUri(baseUri), timeout.Token);
        return socket;
    }

    private static async Task<HttpStatusCode> RefusedAsync(Uri baseUri)
    {
        using var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol("herald.json");
        socket.Options.CollectHttpResponseDetails = true;
        using var timeout = new CancellationTokenSource(Timeout);
        await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(WsUri(baseUri), timeout.Token));
        return socket.HttpStatusCode;
    }
}
