using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static Herald.Integration.Tests.Infrastructure.MsgPackWsClient;

namespace Herald.Redis.Tests;

/// <summary>Binary publications through two Herald servers on one real Redis: Pub/Sub, the Stream and polls keep the bytes.</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisBinaryTests(RedisServerFixture redis)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private Task<TestServer> StartNodeAsync(string prefix) =>
        TestServer.StartAsync(configureServices: services => services.AddHeraldRedis(o =>
        {
            o.Configuration = redis.Configuration;
            o.Prefix = prefix;
        }));

    [Fact]
    public async Task BinaryPublication_ThroughTwoNodes_ReachesMsgPackAndJsonSubscribersPollsAndHistoryUnchanged()
    {
        var prefix = "bin-" + Guid.NewGuid().ToString("N")[..12];
        const string Channel = "chat:redis-bin";
        await using var a = await StartNodeAsync(prefix);
        await using var b = await StartNodeAsync(prefix);
        await using var packedOnA = await MsgPackWsClient.ConnectAsync(a);
        await using var jsonOnB = await b.ConnectAsync();
        await packedOnA.CommandAsync(new() { ["op"] = "subscribe", ["channel"] = Channel });
        var epoch = (await jsonOnB.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("epoch").GetString();
        var all = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();

        await b.PublishBytesAsync(Channel, all);
        var published = await packedOnA.CommandAsync(new() { ["op"] = "publish", ["channel"] = Channel, ["data"] = all.Reverse().ToArray() });
        Assert.True(published.ContainsKey("result"), Describe(published));
        await a.PublishAsync(Channel, """{"n":3}""");

        var first = await packedOnA.NextPubAsync(Deadline);
        Assert.Equal(all, first["data"]);
        Assert.Equal(all.Reverse().ToArray(), (await packedOnA.NextPubAsync(Deadline))["data"]);
        Assert.Equal(3L, Map((await packedOnA.NextPubAsync(Deadline))["data"])["n"]);

        var pushed = (await jsonOnB.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub");
        Assert.Equal(all, pushed.GetProperty("b64").GetBytesFromBase64());
        var second = (await jsonOnB.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub");
        Assert.Equal(all.Reverse().ToArray(), second.GetProperty("b64").GetBytesFromBase64());
        Assert.Equal(JsonValueKind.Object, second.GetProperty("info").ValueKind);
        Assert.Equal(3, (await jsonOnB.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("data").GetProperty("n").GetInt32());

        // The Stream keeps the kind: a poll on A and msgpack history on A read what B published.
        using var poll = JsonDocument.Parse(await a.Http.GetStringAsync($"/poll?channel={Channel}&offset=0&epoch={epoch}"));
        var polled = poll.RootElement.GetProperty("channels").GetProperty(Channel).GetProperty("publications");
        Assert.Equal(all, polled[0].GetProperty("b64").GetBytesFromBase64());
        Assert.Equal(3, polled[2].GetProperty("data").GetProperty("n").GetInt32());
        var history = await packedOnA.CommandAsync(new() { ["op"] = "history", ["channel"] = Channel });
        var pubs = Assert.IsType<List<object?>>(Map(history["result"])["publications"]);
        Assert.Equal(all, Map(pubs[0])["data"]);
        Assert.Equal(all.Reverse().ToArray(), Map(pubs[1])["data"]);
    }
}
