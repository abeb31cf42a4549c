using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Client.Tests.Infrastructure;

namespace Herald.Client.Tests;

public sealed class ReconnectTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task WebSocketRefused_FallsBackToLongPoll_AndStillDelivers()
    {
        await using var server = await TestServer.StartAsync();
        // The WebSocket endpoint 404s: the handshake fails and the client must move on down the default order.
        await using var client = new HeraldClient(Clients.Options(server) with { WebSocketPath = "no-websocket-here" });
        var states = new StateLog(client);
        await client.ConnectAsync();

        Assert.Equal(HeraldTransport.LongPoll, client.Transport);
        var events = states.Events;
        Assert.Equal(HeraldConnectionState.Connecting, events[0].State);
        Assert.Equal(HeraldTransport.WebSocket, events[0].Transport);
        Assert.Contains(events, e => e.State == HeraldConnectionState.Connected && e.Transport == HeraldTransport.LongPoll);
        Assert.DoesNotContain(events, e => e.State == HeraldConnectionState.Connected && e.Transport == HeraldTransport.WebSocket);

        var collector = new Collector(await client.SubscribeAsync("chat:fallback"));
        await client.PublishAsync("chat:fallback", JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32));
        await server.PublishAsync("chat:fallback", "2");
        await collector.WaitForAsync(2, Timeout);
        Assert.Equal(HeraldTransport.LongPoll, client.Transport);
    }

    [Fact]
    public async Task WebSocketOverTheConnectionLimit_FallsBackToLongPoll()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxConnectionsPerIp = 1);
        await using var first = new HeraldClient(Clients.Options(server));
        await first.ConnectAsync();
        Assert.Equal(HeraldTransport.WebSocket, first.Transport);

        // The only WebSocket slot for 127.0.0.1 is taken: 429 on /ws.
        await using var second = new HeraldClient(Clients.Options(server));
        await second.ConnectAsync();
        Assert.Equal(HeraldTransport.LongPoll, second.Transport);
    }

    [Fact]
    public async Task NoTransportCanConnect_ConnectAsyncThrows()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket) with { WebSocketPath = "nowhere" });
        var error = await Assert.ThrowsAsync<HeraldConnectionException>(async () => await client.ConnectAsync());
        Assert.Contains("WebSocket", error.Message, StringComparison.Ordinal);
        Assert.Equal(HeraldConnectionState.Disconnected, client.State);
    }

    [Theory]
    [InlineData(HeraldTransport.WebSocket)]
    [InlineData(HeraldTransport.LongPoll)]
    public async Task SubscribeWithSince_MissedMoreThanMaxHistoryLimit_TheClientGetsEveryOffsetOnceInOrder(HeraldTransport transport)
    {
        // The server reads at most 10 a time: the WebSocket's reply carries the first page and the rest follows as pushes;
        // a poll answer carries a page and the next poll goes on from it.
        await using var server = await TestServer.StartAsync(o => o.MaxHistoryLimit = 10);
        for (var i = 1; i <= 5; i++)
        {
            await server.PublishAsync("chat:far-behind", $"{i}");
        }
        using var history = JsonDocument.Parse(await server.Api.GetStringAsync("/api/channels/chat:far-behind/history?limit=1"));
        var epoch = history.RootElement.GetProperty("epoch").GetString()!;
        for (var i = 6; i <= 87; i++)
        {
            await server.PublishAsync("chat:far-behind", $"{i}");
        }
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        var collector = new Collector(await client.SubscribeAsync("chat:far-behind", new SubscribeOptions { Since = new Protocol.StreamPosition(5, epoch) }), after: 5);
        await server.PublishAsync("chat:far-behind", "88");
        await collector.WaitForAsync(83, Timeout);
        Assert.Equal(Enumerable.Range(6, 83).Select(i => (ulong)i), collector.Offsets);
    }

    [Fact]
    public async Task BaseUris_FirstNodeDown_ConnectsToTheNext_AndMovesToAnotherNodeOnReconnect()
    {
        await using var cluster = await TestServer.StartClusterAsync(2);
        var (a, b) = (cluster[0], cluster[1]);
        var down = new Uri($"http://127.0.0.1:{FreePort()}/"); // nothing listens there
        await using var client = new HeraldClient(Clients.Options(a, HeraldTransport.WebSocket) with { BaseUris = [down, b.BaseUri, a.BaseUri] });
        await client.ConnectAsync().AsTask().WaitAsync(Timeout);
        var collector = new Collector(await client.SubscribeAsync("chat:nodes"));
        await a.PublishAsync("chat:nodes", "1");
        await collector.WaitForAsync(1, Timeout);
        // Only B receives the channel: the subscriber is there.
        Assert.Equal((0, 1), (a.Node.ActiveChannels, b.Node.ActiveChannels));

        // The connection drops; the next attempt goes to the next address, A, and resumes there.
        client.BreakConnection();
        await Wait.UntilAsync(() => (a.Node.ActiveChannels, b.Node.ActiveChannels) == (1, 0), Timeout, "the client to resubscribe on A and leave B");
        await b.PublishAsync("chat:nodes", "2");
        await collector.WaitForAsync(2, Timeout);
        Assert.Equal([1UL, 2UL], collector.Offsets);
    }

    [Fact]
    public async Task BaseUris_NoNodeAnswers_ConnectAsyncThrowsNamingEveryAddress()
    {
        var first = new Uri($"http://127.0.0.1:{FreePort()}/");
        var second = new Uri($"http://127.0.0.1:{FreePort()}/");
        await using var client = new HeraldClient(new HeraldClientOptions
        {
            BaseUris = [first, second],
            ForcedTransport = HeraldTransport.WebSocket,
            ReconnectMinDelay = TimeSpan.FromMilliseconds(10),
            ConnectTimeout = TimeSpan.FromSeconds(2),
        });
        var error = await Assert.ThrowsAsync<HeraldConnectionException>(async () => await client.ConnectAsync());
        Assert.Contains(first.ToString(), error.Message, StringComparison.Ordinal);
        Assert.Contains(second.ToString(), error.Message, StringComparison.Ordinal);
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task SwitchingTransportsMidStream_WhileAPublisherRuns_DeliversEveryOffsetExactlyOnce()
    {
        await using var server = await TestServer.StartAsync();
        const string Channel = "chat:switch";
        const int Total = 3000;
        await using var client = new HeraldClient(Clients.Options(server));
        var states = new StateLog(client);
        await client.ConnectAsync();
        Assert.Equal(HeraldTransport.WebSocket, client.Transport);
        var collector = new Collector(await client.SubscribeAsync(Channel));

        var publisher = Task.Run(async () =>
        {
            for (var i = 1; i <= Total; i++)
            {
                await server.PublishAsync(Channel, $$"""{"i":{{i}}}""");
            }
        });

        // Switch at different points of the stream while publications keep coming.
        HeraldTransport[] plan = [HeraldTransport.LongPoll, HeraldTransport.ShortPoll, HeraldTransport.WebSocket, HeraldTransport.ShortPoll, HeraldTransport.LongPoll, HeraldTransport.WebSocket];
        var switchesWhilePublishing = 0;
        for (var step = 0; step < plan.Length; step++)
        {
            var threshold = (step + 1) * Total / (plan.Length + 2);
            await Wait.UntilAsync(() => collector.Count >= threshold || publisher.IsCompleted, Timeout, $"{threshold} publications before switch {step}");
            switchesWhilePublishing += publisher.IsCompleted ? 0 : 1;
            await client.SwitchTransportAsync(plan[step]).AsTask().WaitAsync(Timeout);
            Assert.Equal(plan[step], client.Transport);
        }
        await publisher.WaitAsync(Timeout);
        await collector.WaitForAsync(Total, Timeout);

        Assert.Equal(Enumerable.Range(1, Total).Select(i => (ulong)i), collector.Offsets);
        Assert.True(switchesWhilePublishing >= plan.Length / 2, $"only {switchesWhilePublishing} of {plan.Length} switches happened mid-stream");
        Assert.Equal(Enumerable.Range(1, Total), collector.Received.Select(p => p.Data.GetProperty("i").GetInt32()));
        foreach (var kind in plan)
        {
            Assert.Contains(states.Events, e => e.State == HeraldConnectionState.Connected && e.Transport == kind);
        }
    }

    [Theory]
    [InlineData(HeraldTransport.WebSocket)]
    [InlineData(HeraldTransport.LongPoll)]
    [InlineData(HeraldTransport.ShortPoll)]
    public async Task ServerRestartedOnTheSamePort_ClientReconnects_AndReportsRecoveredFalseWithTheNewEpoch(HeraldTransport transport)
    {
        var server = await TestServer.StartAsync();
        var port = server.Port;
        const string Channel = "chat:restart";
        await using var client = new HeraldClient(Clients.Options(server, transport));
        var states = new StateLog(client);
        var failures = new ConcurrentQueue<HeraldRecoveryFailedEventArgs>();
        client.RecoveryFailed += (_, e) => failures.Enqueue(e);
        await client.ConnectAsync();
        var subscription = await client.SubscribeAsync(Channel);
        var collector = new Collector(subscription);
        for (var i = 0; i < 3; i++)
        {
            await server.PublishAsync(Channel, "{}");
        }
        await collector.WaitForAsync(3, Timeout);
        var oldEpoch = collector.Last.Epoch;

        await server.DisposeAsync();
        await Wait.UntilAsync(() => states.Events.Any(e => e.State == HeraldConnectionState.Disconnected), Timeout, "the client to notice the server is gone");

        await using var restarted = await StartOnPortAsync(port);
        await Wait.UntilAsync(() => !failures.IsEmpty, Timeout, $"a recovered:false report ({states})");

        var failure = Assert.Single(failures);
        var head = await restarted.Api.GetFromJsonAsync<JsonElement>($"/api/channels/{Channel}/history?limit=1");
        var newEpoch = head.GetProperty("epoch").GetString();
        Assert.Equal(Channel, failure.Channel);
        Assert.Equal(new Herald.Protocol.StreamPosition(3, oldEpoch), failure.Previous);
        Assert.Equal(newEpoch, failure.Position.Epoch);
        Assert.NotEqual(oldEpoch, newEpoch);
        Assert.True(failure.EpochChanged);
        Assert.Equal(0UL, failure.Position.Offset);
        Assert.Equal(HeraldConnectionState.Connected, client.State);

        // Delivery goes on in the new epoch.
        await restarted.PublishAsync(Channel, """{"after":"restart"}""");
        await collector.WaitForAsync(4, Timeout);
        Assert.Equal(new Herald.Protocol.StreamPosition(1, newEpoch!), collector.Last);
    }

    /// <summary>The old server's port is free again once it is disposed; retry briefly in case the OS is slow to release it.</summary>
    private static async Task<TestServer> StartOnPortAsync(int port)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return await TestServer.StartAsync(port: port);
            }
            catch (IOException) when (attempt < 20)
            {
                await Task.Delay(100);
            }
        }
    }
}
