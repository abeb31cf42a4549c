using System.Net;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Redis.Tests;

/// <summary>Two Herald servers (real Kestrel, each on its own loopback port) on one real Redis: one Herald.</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisMultiNodeTests(RedisServerFixture redis)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private Task<TestServer> StartNodeAsync(string prefix, Action<HeraldOptions>? configure = null) =>
        TestServer.StartAsync(configure, configureServices: services => services.AddHeraldRedis(o =>
        {
            o.Configuration = redis.Configuration;
            o.Prefix = prefix;
        }));

    [Fact]
    public async Task WebSocketSubscriberOnA_ReceivesWhatBsApiPublishes_AndBListsItsPresence()
    {
        var prefix = "e2e-" + Guid.NewGuid().ToString("N")[..12];
        const string Channel = "chat:redis-e2e";
        await using var a = await StartNodeAsync(prefix);
        await using var b = await StartNodeAsync(prefix);

        await using var subscriber = await a.ConnectAsync();
        var subscribed = (await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result");
        Assert.Equal(0UL, subscribed.GetProperty("offset").GetUInt64());
        var epoch = subscribed.GetProperty("epoch").GetString();

        using var published = await b.Api.PostAsync("/api/publish", new StringContent($$$"""{"channel":"{{{Channel}}}","data":{"text":"from b"}}"""));
        var answer = await published.Content.ReadAsStringAsync();
        Assert.True(published.StatusCode == HttpStatusCode.OK, $"POST /api/publish on B answered {(int)published.StatusCode}: {answer}");
        using var position = JsonDocument.Parse(answer);
        Assert.Equal(1UL, position.RootElement.GetProperty("offset").GetUInt64());
        Assert.Equal(epoch, position.RootElement.GetProperty("epoch").GetString());

        var push = (await subscriber.NextPushAsync(Deadline)).GetProperty("push");
        Assert.Equal(Channel, push.GetProperty("channel").GetString());
        Assert.Equal(1UL, push.GetProperty("pub").GetProperty("offset").GetUInt64());
        Assert.Equal("from b", push.GetProperty("pub").GetProperty("data").GetProperty("text").GetString());

        // The subscriber on A is present, as seen from B.
        using var presence = JsonDocument.Parse(await b.Api.GetStringAsync($"/api/channels/{Channel}/presence"));
        Assert.Single(presence.RootElement.GetProperty("presence").EnumerateObject());

        // History through A holds what B published, in the epoch the subscribe promised.
        using var history = JsonDocument.Parse(await a.Api.GetStringAsync($"/api/channels/{Channel}/history"));
        Assert.Equal(epoch, history.RootElement.GetProperty("epoch").GetString());
        Assert.Equal(1UL, Assert.Single(history.RootElement.GetProperty("publications").EnumerateArray()).GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task SubscribeWithSinceOnA_MissedMoreThanMaxHistoryLimit_ReplyHoldsOnePage_AndTheRestFollowsAsPushesOnceInOrder()
    {
        var prefix = "catch-up-" + Guid.NewGuid().ToString("N")[..12];
        await using var a = await StartNodeAsync(prefix, o => o.MaxHistoryLimit = 10);
        await using var b = await StartNodeAsync(prefix, o => o.MaxHistoryLimit = 10);
        // Read page by page from the Stream (XRANGE … COUNT 10) on A while B publishes.
        await CatchUpScenario.RunAsync(a, b, "chat:catch-up", limit: 10, missed: 95, during: 60);
    }

    [Fact]
    public async Task RedisRestartedWithoutPersistence_SubscriberIsClosedWith4004_AndResubscribingWithSinceSaysRecoveredFalse()
    {
        const string Channel = "chat:redis-restarted";
        using var server = new RedisServer(persistent: false);
        await server.StartAsync();
        Task<TestServer> StartOnRestartingRedisAsync() =>
            TestServer.StartAsync(configureServices: services => services.AddHeraldRedis(o =>
            {
                o.Configuration = server.Configuration + ",connectTimeout=500,asyncTimeout=1000,syncTimeout=1000";
                o.Prefix = "restart";
                o.PositionCheckInterval = TimeSpan.FromMilliseconds(200);
            }));
        await using var a = await StartOnRestartingRedisAsync();
        await using var b = await StartOnRestartingRedisAsync();

        await using var subscriber = await a.ConnectAsync();
        var subscribed = (await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result");
        var oldEpoch = subscribed.GetProperty("epoch").GetString();
        await b.PublishAsync(Channel, """{"n":1}""");
        Assert.Equal(1UL, (await subscriber.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());

        server.Stop();
        await server.StartAsync();

        // B publishes as soon as Redis answers again: the log is gone, so this is offset 1 of a new epoch.
        JsonElement position;
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            using var response = await b.Api.PostAsync("/api/publish", new StringContent($$$"""{"channel":"{{{Channel}}}","data":{"n":2}}"""));
            if (response.StatusCode == HttpStatusCode.OK)
            {
                position = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
                break;
            }
            Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline,
                $"POST /api/publish while Redis restarts answered {(int)response.StatusCode}");
            await Task.Delay(50);
        }
        var newEpoch = position.GetProperty("epoch").GetString();
        Assert.NotEqual(oldEpoch, newEpoch);
        Assert.Equal(1UL, position.GetProperty("offset").GetUInt64());

        // A hears of the new epoch (by Pub/Sub, or from history when its connection came back after the publish) and
        // closes its subscriber rather than passing offset 1 off as the offset after 1.
        Assert.Equal((System.Net.WebSockets.WebSocketCloseStatus)4004, await subscriber.WaitClosedAsync(Deadline));

        await using var again = await a.ConnectAsync();
        var recovered = (await again.CommandAsync($$$"""{"op":"subscribe","channel":"{{{Channel}}}","since":{"offset":1,"epoch":"{{{oldEpoch}}}"}}""")).GetProperty("result");
        Assert.False(recovered.GetProperty("recovered").GetBoolean());
        Assert.Equal(newEpoch, recovered.GetProperty("epoch").GetString());
    }
}
