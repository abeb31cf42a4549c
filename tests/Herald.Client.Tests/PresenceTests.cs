using System.Text.Json;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;

namespace Herald.Client.Tests;

/// <summary>
/// Presence on every transport, against the real server: polling clients are listed under their <see cref="HeraldClient.ClientId"/>
/// with their info, WebSocket clients under the server's id with theirs. (The test profile's <c>chat</c> namespace has
/// <c>Presence</c> on.)
/// </summary>
public sealed class PresenceTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task LongAndShortPollClients_ArePresentWithTheirInfo_AsSeenFromAWebSocketClient()
    {
        await using var server = await TestServer.StartAsync();
        const string channel = "chat:who";
        await using var watcher = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket) with { Info = Clients.Json("""{"name":"Wendy"}""") });
        HeraldClient longPoller;
        using (var document = JsonDocument.Parse("""{"name":"Lena","avatar":"l.png"}"""))
        {
            // The document is gone before the client connects: the client must send its own copy.
            longPoller = new HeraldClient(Clients.Options(server, HeraldTransport.LongPoll) with { Info = document.RootElement });
        }
        await using var _ = longPoller;
        await using var shortPoller = new HeraldClient(Clients.Options(server, HeraldTransport.ShortPoll) with { Info = Clients.Json("""{"name":"Sid"}""") });
        Assert.Matches("^[0-9a-f]{32}$", longPoller.ClientId);
        Assert.Equal(longPoller.ClientId, longPoller.ClientId);
        Assert.NotEqual(longPoller.ClientId, shortPoller.ClientId);

        var collectors = new List<Collector>();
        foreach (var client in new[] { watcher, longPoller, shortPoller })
        {
            await client.ConnectAsync();
            collectors.Add(new Collector(await client.SubscribeAsync(channel)));
        }

        var present = await PresenceUntilAsync(watcher, channel, p => p.ContainsKey(longPoller.ClientId) && p.ContainsKey(shortPoller.ClientId), "both polling clients in presence");
        Assert.Equal(3, present.Count);
        var lena = present[longPoller.ClientId];
        Assert.Equal(("", longPoller.ClientId), (lena.User, lena.Client));
        Assert.Equal("Lena", lena.Info!.Value.GetProperty("name").GetString());
        Assert.Equal("l.png", lena.Info!.Value.GetProperty("avatar").GetString());
        var sid = present[shortPoller.ClientId];
        Assert.Equal(("", shortPoller.ClientId), (sid.User, sid.Client));
        Assert.Equal("Sid", sid.Info!.Value.GetProperty("name").GetString());

        // The WebSocket watcher is listed under the id the server gave its connection, not its ClientId.
        var own = Assert.Single(present, p => p.Key != longPoller.ClientId && p.Key != shortPoller.ClientId);
        Assert.NotEqual(watcher.ClientId, own.Key);
        Assert.Equal(own.Key, own.Value.Client);
        Assert.Equal("Wendy", own.Value.Info!.Value.GetProperty("name").GetString());

        // Later polls keep the same id: once both pollers have polled again (they received a publication), there is
        // still one entry per client, where a new id per poll would have left a second, still-leased entry.
        await server.PublishAsync(channel, "1");
        foreach (var collector in collectors)
        {
            await collector.WaitForAsync(1, Deadline);
        }
        present = await watcher.PresenceAsync(channel);
        Assert.Equal(new[] { longPoller.ClientId, shortPoller.ClientId, own.Key }.Order(StringComparer.Ordinal), present.Keys.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(HeraldTransport.LongPoll)]
    [InlineData(HeraldTransport.ShortPoll)]
    public async Task WebSocketClientInfo_ShowsInPresence_AndAPollerWithoutInfoHasNone(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        const string channel = "chat:ws-info";
        await using var talker = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket) with { Info = Clients.Json("""{"name":"Tom","tags":["a"]}""") });
        await talker.ConnectAsync();
        await talker.SubscribeAsync(channel);
        await using var poller = new HeraldClient(Clients.Options(server, transport));
        await poller.ConnectAsync();
        await poller.SubscribeAsync(channel);

        // Asked over POST /cmd by the polling client.
        var present = await PresenceUntilAsync(poller, channel, p => p.Count == 2, "the WebSocket client and the poller");
        var tom = Assert.Single(present, p => p.Key != poller.ClientId).Value;
        Assert.Equal("Tom", tom.Info!.Value.GetProperty("name").GetString());
        Assert.Equal("a", tom.Info!.Value.GetProperty("tags")[0].GetString());
        Assert.Null(present[poller.ClientId].Info);
    }

    // Issue 4: after a move from polling to a WebSocket the client was listed twice, under its poll id and its
    // connection's id, until the poll lease ran out (the poll's wait plus PollPresenceTimeout, 20 s here).
    [Fact]
    public async Task SwitchFromLongPollToWebSocket_ListsTheClientOnce()
    {
        await using var server = await TestServer.StartAsync();
        const string channel = "chat:moving";
        await using var client = new HeraldClient(Clients.Options(server) with
        {
            Transports = [HeraldTransport.LongPoll, HeraldTransport.WebSocket],
            Info = Clients.Json("""{"name":"Mo"}"""),
        });
        await client.ConnectAsync();
        Assert.Equal(HeraldTransport.LongPoll, client.Transport);
        await client.SubscribeAsync(channel);
        var polling = await PresenceUntilAsync(client, channel, p => p.ContainsKey(client.ClientId), "the poll lease");
        Assert.Single(polling);

        await client.SwitchTransportAsync(HeraldTransport.WebSocket);
        var present = await PresenceUntilAsync(client, channel, p => !p.ContainsKey(client.ClientId), "the poll lease to end");
        Assert.Equal("Mo", Assert.Single(present).Value.Info!.Value.GetProperty("name").GetString());
    }

    [Fact]
    public void Info_ThatIsNotAJsonObject_IsRefusedByTheConstructor()
    {
        var options = new HeraldClientOptions { Info = JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32) };
        var error = Assert.Throws<ArgumentException>(() => new HeraldClient(options));
        Assert.Equal("Info", error.ParamName);
        // JSON null is "no info".
        _ = new HeraldClient(new HeraldClientOptions { Info = Clients.Json("null") });
    }

    /// <summary>
    /// Asks for presence until <paramref name="condition"/> holds or the deadline passes. The condition lives on the
    /// server, so the only way to observe it is to ask again (Wait.UntilAsync's pattern, with an async probe).
    /// </summary>
    private static async Task<IReadOnlyDictionary<string, ClientInfo>> PresenceUntilAsync(
        HeraldClient client, string channel, Func<IReadOnlyDictionary<string, ClientInfo>, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var presence = await client.PresenceAsync(channel);
            if (condition(presence))
            {
                return presence;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {Deadline.TotalSeconds:0.#} s waiting for: {what}; last seen: {string.Join(", ", presence.Keys)}");
            }
            await Task.Delay(20);
        }
    }
}
