using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;

namespace Herald.Client.Tests;

public sealed record ChatMessage(string Text);

[JsonSerializable(typeof(ChatMessage))]
[JsonSerializable(typeof(int))]
internal sealed partial class TestJsonContext : JsonSerializerContext;

public sealed class TransportTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static TheoryData<HeraldTransport> AllTransports => new() { HeraldTransport.WebSocket, HeraldTransport.Sse, HeraldTransport.LongPoll, HeraldTransport.ShortPoll };

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task ForcedTransport_ReceivesInOrder_AndPublishes(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        Assert.Equal(transport, client.Transport);

        var channel = $"chat:forced-{transport}";
        var subscription = await client.SubscribeAsync(channel);
        var collector = new Collector(subscription);
        for (var i = 0; i < 100; i++)
        {
            await server.PublishAsync(channel, $$"""{"n":{{i}}}""");
        }
        var own = await client.PublishAsync(channel, new ChatMessage("hi"), TestJsonContext.Default.ChatMessage);
        Assert.Equal(101UL, own.Offset);

        await collector.WaitForAsync(101, Timeout);
        Assert.Equal(Enumerable.Range(1, 101).Select(i => (ulong)i), collector.Offsets);
        Assert.Equal(42, collector.Received[42].Data.GetProperty("n").GetInt32());
        var mine = collector.Received[100];
        Assert.Equal("hi", mine.GetData(TestJsonContext.Default.ChatMessage)!.Text);
        Assert.NotNull(mine.Info);
        Assert.Equal(transport, client.Transport);
    }

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task HistoryAndPresence_WorkOnEveryTransport(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        // Presence lists WebSocket subscribers and polling clients while they poll the channel; the client under test
        // only publishes (it never subscribes or polls), so a WebSocket watcher is the room's one entry on every transport.
        await using var watcher = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket));
        await watcher.ConnectAsync();
        await watcher.SubscribeAsync("chat:room");
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        for (var i = 0; i < 5; i++)
        {
            await client.PublishAsync("chat:room", JsonSerializer.SerializeToElement(i, TestJsonContext.Default.Int32));
        }

        var all = await client.HistoryAsync("chat:room");
        Assert.Equal(5UL, all.Head.Offset);
        Assert.Equal([1UL, 2, 3, 4, 5], all.Publications.Select(p => p.Offset));
        var after = await client.HistoryAsync("chat:room", new StreamPosition(3, all.Head.Epoch), limit: 10);
        Assert.Equal([4UL, 5], after.Publications.Select(p => p.Offset));
        Assert.Equal(3, after.Publications[0].Data.GetInt32()); // the fourth publication carried i = 3

        var presence = await client.PresenceAsync("chat:room");
        var present = Assert.Single(presence);
        Assert.Equal(present.Key, present.Value.Client);

        var refused = await Assert.ThrowsAsync<HeraldException>(async () => await client.PublishAsync("locked:x", JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32)));
        Assert.Equal(ErrorCodes.PermissionDenied, refused.Code);
    }

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task SubscribeToInvalidChannel_ThrowsTheServersCode_AndOtherSubscriptionsGoOn(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        var good = new Collector(await client.SubscribeAsync("chat:good"));

        var error = await Assert.ThrowsAsync<HeraldException>(async () => await client.SubscribeAsync("nosuchns:x"));
        Assert.Equal(ErrorCodes.InvalidChannel, error.Code);

        await server.PublishAsync("chat:good", "1");
        await good.WaitForAsync(1, Timeout);
    }

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task Unsubscribe_EndsTheEnumeration_AndResubscribeStartsAtTheHead(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        var subscription = await client.SubscribeAsync("chat:u");
        var collector = new Collector(subscription);
        await server.PublishAsync("chat:u", "1");
        await collector.WaitForAsync(1, Timeout);

        await client.UnsubscribeAsync(subscription);
        await subscription.Completion.WaitAsync(Timeout);

        await server.PublishAsync("chat:u", "2");
        var again = await client.SubscribeAsync("chat:u");
        Assert.Equal(2UL, again.Position!.Value.Offset);
        var second = new Collector(again, after: 2);
        await server.PublishAsync("chat:u", "3");
        await second.WaitForAsync(1, Timeout);
        Assert.Equal([3UL], second.Offsets);
    }

    [Fact]
    public async Task Callback_ReceivesPublicationsInOrder()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server));
        await client.ConnectAsync();
        var offsets = new List<ulong>();
        var subscription = await client.SubscribeAsync("chat:cb", (p, _) =>
        {
            lock (offsets)
            {
                offsets.Add(p.Offset);
            }
            return ValueTask.CompletedTask;
        });
        for (var i = 0; i < 20; i++)
        {
            await server.PublishAsync("chat:cb", "{}");
        }
        await Wait.UntilAsync(() => { lock (offsets) { return offsets.Count == 20; } }, Timeout, "20 callbacks");
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (ulong)i), offsets);
        Assert.Throws<InvalidOperationException>(() => subscription.ReadAllAsync());
    }
}
