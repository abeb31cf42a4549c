using System.Net.Http.Json;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class TransportSwitchTests
{
    [Fact]
    public async Task ClientSwitchingWebSocketLongPollShortPollWebSocket_WhilePublishersRun_ReceivesEveryOffsetOnce()
    {
        await using var server = await TestServer.StartAsync();
        const string Channel = "chat:switch";
        const int Publishers = 3;
        const int PerPublisher = 1000;
        const int Total = Publishers * PerPublisher;
        var seen = new List<ulong>(Total);
        var epoch = "";

        void Take(JsonElement pub)
        {
            var offset = pub.GetProperty("offset").GetUInt64();
            Assert.Equal((ulong)seen.Count + 1, offset); // in order, no gap, no duplicate
            seen.Add(offset);
        }

        // Phase 1: WebSocket.
        var ws = await server.ConnectAsync();
        epoch = (await ws.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("epoch").GetString()!;
        var publishing = Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                await server.PublishAsync(Channel, $$"""{"p":{{p}},"i":{{i}}}""");
            }
        })).ToArray();
        while (seen.Count < Total / 4)
        {
            Take((await ws.NextPushAsync()).GetProperty("push").GetProperty("pub"));
        }
        ws.Socket.Abort();
        await ws.DisposeAsync();

        // Phase 2: long polling; phase 3: short polling — each resuming from the last offset seen.
        async Task PollUntilAsync(int target, double wait)
        {
            while (seen.Count < target)
            {
                var url = $"/poll?channel={Channel}&offset={seen.Count}&epoch={epoch}&wait={wait}";
                using var doc = JsonDocument.Parse(await server.Http.GetStringAsync(url));
                var answer = doc.RootElement.GetProperty("channels").GetProperty(Channel);
                Assert.True(answer.GetProperty("recovered").GetBoolean());
                foreach (var pub in answer.GetProperty("publications").EnumerateArray())
                {
                    Take(pub);
                }
            }
        }
        await PollUntilAsync(Total / 2, wait: 5);
        await PollUntilAsync(Total * 3 / 4, wait: 0);

        // Phase 4: back to a WebSocket, recovering with since.
        ws = await server.ConnectAsync();
        var reply = await ws.CommandAsync($$$"""{"op":"subscribe","channel":"{{{Channel}}}","since":{"offset":{{{seen.Count}}},"epoch":"{{{epoch}}}"}}""");
        Assert.True(reply.GetProperty("result").GetProperty("recovered").GetBoolean(), reply.ToString());
        foreach (var pub in reply.GetProperty("result").GetProperty("publications").EnumerateArray())
        {
            Take(pub);
        }
        while (seen.Count < Total)
        {
            Take((await ws.NextPushAsync(TimeSpan.FromSeconds(20))).GetProperty("push").GetProperty("pub"));
        }
        await Task.WhenAll(publishing);
        await ws.DisposeAsync();
        Assert.Equal(Enumerable.Range(1, Total).Select(i => (ulong)i), seen);
    }
}

[CollectionDefinition(nameof(HeavyCollection), DisableParallelization = true)]
public sealed class HeavyCollection;

[Collection(nameof(HeavyCollection))]
public sealed class ManyLongPollsTests
{
    [Fact]
    public async Task FiveThousandLongPollsOnOneChannel_AreAllAnsweredByOnePublish_AndReleased()
    {
        const int Polls = 5000;
        await using var server = await TestServer.StartAsync();
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = Polls + 10, PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        using var http = new HttpClient(handler) { BaseAddress = server.BaseUri, Timeout = TimeSpan.FromSeconds(60) };
        using var first = JsonDocument.Parse(await http.GetStringAsync("/poll?channel=chat:many"));
        var epoch = first.RootElement.GetProperty("channels").GetProperty("chat:many").GetProperty("epoch").GetString();

        GC.Collect();
        var memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
        var polls = Enumerable.Range(0, Polls).Select(_ => http.GetStringAsync($"/poll?channel=chat:many&offset=0&epoch={epoch}&wait=30")).ToArray();
        await Wait.UntilAsync(() => server.Node.ParkedPolls == Polls, TimeSpan.FromSeconds(60), $"{Polls} polls park");

        var memoryParked = GC.GetTotalMemory(forceFullCollection: true);
        var published = DateTime.UtcNow;
        await server.PublishAsync("chat:many", """{"hello":"everyone"}""");
        var answers = await Task.WhenAll(polls);
        var elapsed = DateTime.UtcNow - published;
        Console.WriteLine($"{Polls} long polls answered {elapsed.TotalMilliseconds:0} ms after one publish");

        // Every poll got the publication (none ran out its 30 s wait), and all share one serialized answer.
        Assert.All(answers, a => Assert.Equal(answers[0], a));
        Assert.Contains("\"hello\":\"everyone\"", answers[0]);
        Assert.True(elapsed < TimeSpan.FromSeconds(30), "answered by the publication, not by the wait running out");
        Assert.Equal(0, server.Node.ParkedPolls);

        handler.Dispose();
        // Closed connections are released asynchronously on both sides; await the fall, with a deadline.
        var memoryAfter = long.MaxValue;
        await Wait.UntilAsync(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
            return memoryAfter < memoryParked / 2;
        }, TimeSpan.FromSeconds(20), $"memory falls back below half of the {memoryParked / 1024} KiB held while parked");
        Console.WriteLine($"managed memory: before {memoryBefore / 1024} KiB, parked {memoryParked / 1024} KiB, after {memoryAfter / 1024} KiB");
        Assert.True(memoryAfter < memoryParked / 2, $"memory did not fall back: parked {memoryParked / 1024} KiB, after {memoryAfter / 1024} KiB");
    }
}

public sealed class ShutdownTests
{
    [Fact]
    public async Task Shutdown_ClosesWebSocketsWith1001_AndAnswersParkedPolls()
    {
        var server = await TestServer.StartAsync();
        var client = await server.ConnectAsync();
        using var first = System.Text.Json.JsonDocument.Parse(await server.Http.GetStringAsync("/poll?channel=chat:bye"));
        var epoch = first.RootElement.GetProperty("channels").GetProperty("chat:bye").GetProperty("epoch").GetString();
        using var http = new HttpClient { BaseAddress = server.BaseUri }; // outlives the server's own clients
        var poll = http.GetAsync($"/poll?channel=chat:bye&offset=0&epoch={epoch}&wait=30");
        await Wait.UntilAsync(() => server.Node.ParkedPolls == 1, TimeSpan.FromSeconds(5), "the poll parks");

        var stopping = server.DisposeAsync().AsTask();
        Assert.Equal(System.Net.WebSockets.WebSocketCloseStatus.EndpointUnavailable, await client.WaitClosedAsync());
        using var answered = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(System.Net.HttpStatusCode.OK, answered.StatusCode);
        await stopping.WaitAsync(TimeSpan.FromSeconds(10));
        await client.DisposeAsync();
    }
}
