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
        TestServer.StartAsync(configure, configureServices: services =>
        {
            UserAuthenticator.Use(services);
            services.AddHeraldRedis(o =>
            {
                o.Configuration = redis.Configuration;
                o.Prefix = prefix;
            });
        });

    [Fact]
    public async Task UserCommandsOnA_ReachTheUsersConnectionsOnB_DisconnectSubscribeAndUnsubscribe()
    {
        var prefix = "ctl-" + Guid.NewGuid().ToString("N")[..12];
        const string Channel = "chat:redis-server-sub";
        await using var a = await StartNodeAsync(prefix);
        await using var b = await StartNodeAsync(prefix);
        await using var aliceOnB = await b.ConnectAsync(UserAuthenticator.TokenFor("alice"));
        await using var bobOnB = await b.ConnectAsync(UserAuthenticator.TokenFor("bob"));
        await a.PublishAsync(Channel, """{"n":1}""");
        await a.PublishAsync(Channel, """{"n":2}""");
        using var history = JsonDocument.Parse(await a.Api.GetStringAsync($"/api/channels/{Channel}/history"));
        var epoch = history.RootElement.GetProperty("epoch").GetString();

        using (var subscribe = await a.Api.PostAsync("/api/subscribe", new StringContent($$$"""{"user":"alice","channel":"{{{Channel}}}","since":{"offset":1,"epoch":"{{{epoch}}}"}}""")))
        {
            Assert.Equal(HttpStatusCode.OK, subscribe.StatusCode);
        }
        var subscribed = (await aliceOnB.NextPushAsync(Deadline)).GetProperty("push").GetProperty("subscribe");
        Assert.True(subscribed.GetProperty("recovered").GetBoolean());
        Assert.Equal(2UL, Assert.Single(subscribed.GetProperty("publications").EnumerateArray()).GetProperty("offset").GetUInt64());
        await a.PublishAsync(Channel, """{"n":3}""");
        Assert.Equal(3UL, (await aliceOnB.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());

        using (var unsubscribe = await a.Api.PostAsync("/api/unsubscribe", new StringContent($$"""{"user":"alice","channel":"{{Channel}}"}""")))
        {
            Assert.Equal(HttpStatusCode.OK, unsubscribe.StatusCode);
        }
        Assert.True((await aliceOnB.NextPushAsync(Deadline)).GetProperty("push").TryGetProperty("unsubscribe", out _));

        using (var disconnect = await a.Api.PostAsync("/api/disconnect", new StringContent("""{"user":"alice","code":4200,"reason":"bye"}""")))
        {
            Assert.Equal(HttpStatusCode.OK, disconnect.StatusCode);
        }
        Assert.Equal((System.Net.WebSockets.WebSocketCloseStatus)4200, await aliceOnB.WaitClosedAsync(Deadline));
        Assert.True((await bobOnB.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
        Assert.False(bobOnB.TryReadPush(out var stray), $"bob got a push: {stray}");
    }

    [Fact]
    public async Task UserCommand_WhileRedisIsDown_AnswersUnavailable()
    {
        using var server = new RedisServer(persistent: false);
        await server.StartAsync();
        await using var node = await TestServer.StartAsync(configureServices: services => services.AddHeraldRedis(o =>
        {
            o.Configuration = server.Configuration + ",connectTimeout=500,asyncTimeout=1000,syncTimeout=1000";
            o.Prefix = "ctl-down";
        }));
        server.Stop();
        using var response = await node.Api.PostAsync("/api/disconnect", new StringContent("""{"user":"alice"}"""));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("\"unavailable\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

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
    public async Task IdempotentPublish_ConcurrentRepeatsOnTwoNodes_OnePublicationAndOneOffsetForAll()
    {
        var prefix = "e2e-" + Guid.NewGuid().ToString("N")[..12];
        const string Channel = "chat:redis-idem";
        await using var a = await StartNodeAsync(prefix);
        await using var b = await StartNodeAsync(prefix);
        await using var subscriber = await a.ConnectAsync();
        await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");

        var body = $$"""{"channel":"{{Channel}}","data":{"once":true},"idempotency_key":"redis-once"}""";
        var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
        {
            using var response = await (i % 2 == 0 ? a : b).Api.PostAsync("/api/publish", new StringContent(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            return JsonDocument.Parse(text).RootElement.GetProperty("offset").GetUInt64();
        })));

        Assert.Equal(1UL, Assert.Single(answers.Distinct()));
        var fence = await b.PublishAsync(Channel, "\"fence\"");
        Assert.Equal(2UL, fence);
        Assert.Equal(1UL, (await subscriber.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
        Assert.Equal(2UL, (await subscriber.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task HistoryPaging_250PublicationsInPagesOf100_ForwardThroughAAndBackwardThroughB()
    {
        var prefix = "e2e-" + Guid.NewGuid().ToString("N")[..12];
        const string Channel = "chat:redis-paging";
        await using var a = await StartNodeAsync(prefix);
        await using var b = await StartNodeAsync(prefix);
        for (var i = 1; i <= 250; i++)
        {
            await (i % 2 == 0 ? a : b).PublishAsync(Channel, $$"""{"n":{{i}}}""");
        }

        async Task<List<List<ulong>>> WalkAsync(TestServer node, string first, bool reverse)
        {
            var pages = new List<List<ulong>>();
            string? query = first;
            while (query is not null)
            {
                using var page = JsonDocument.Parse(await node.Api.GetStringAsync($"/api/channels/{Channel}/history?limit=100{query}"));
                pages.Add([.. page.RootElement.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64())]);
                query = page.RootElement.TryGetProperty("next", out var next)
                    ? $"&offset={next.GetProperty("offset").GetUInt64()}&epoch={next.GetProperty("epoch").GetString()}" + (reverse ? "&reverse=true" : "")
                    : null;
                Assert.True(pages.Count <= 3, "the walk did not end after three pages");
            }
            return pages;
        }

        static List<ulong> Offsets(int from, int to) =>
            from <= to ? [.. Enumerable.Range(from, to - from + 1).Select(i => (ulong)i)] : [.. Enumerable.Range(to, from - to + 1).Select(i => (ulong)i).Reverse()];

        Assert.Equal([Offsets(1, 100), Offsets(101, 200), Offsets(201, 250)], await WalkAsync(a, "&offset=0", reverse: false));
        Assert.Equal([Offsets(250, 151), Offsets(150, 51), Offsets(50, 1)], await WalkAsync(b, "&reverse=true", reverse: true));
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
