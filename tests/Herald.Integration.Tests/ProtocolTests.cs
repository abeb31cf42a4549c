using Herald.Tests.Infrastructure;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class ProtocolTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Connect_ReturnsClientIdAndEchoesCommandId()
    {
        await using var client = await WsClient.OpenAsync(_server.WebSocketUri);
        await client.SendRawAsync("""{"id":41,"op":"connect"}""");
        var reply = await client.ReplyAsync(41);
        var result = reply.GetProperty("result");
        Assert.StartsWith(_server.Node.NodeId, result.GetProperty("client").GetString());
        Assert.Equal("", result.GetProperty("user").GetString());
    }

    [Fact]
    public async Task Ping_AfterConnect_ReturnsEmptyResult()
    {
        await using var client = await _server.ConnectAsync();
        var reply = await client.CommandAsync("""{"op":"ping"}""");
        Assert.Equal(JsonValueKind.Object, reply.GetProperty("result").ValueKind);
    }

    [Fact]
    public async Task SubscribeThenPublish_DeliversPushesInOffsetOrder()
    {
        await using var subscriber = await _server.ConnectAsync();
        await using var publisher = await _server.ConnectAsync();
        var sub = await subscriber.CommandAsync("""{"op":"subscribe","channel":"chat:order"}""");
        var epoch = sub.GetProperty("result").GetProperty("epoch").GetString();
        Assert.Equal(0UL, sub.GetProperty("result").GetProperty("offset").GetUInt64());
        Assert.False(sub.GetProperty("result").TryGetProperty("recovered", out _));

        for (var i = 1; i <= 50; i++)
        {
            var published = await publisher.CommandAsync($$$"""{"op":"publish","channel":"chat:order","data":{"n":{{{i}}}}}""");
            Assert.Equal((ulong)i, published.GetProperty("result").GetProperty("offset").GetUInt64());
            Assert.Equal(epoch, published.GetProperty("result").GetProperty("epoch").GetString());
        }
        for (var i = 1; i <= 50; i++)
        {
            var push = (await subscriber.NextPushAsync()).GetProperty("push");
            Assert.Equal("chat:order", push.GetProperty("channel").GetString());
            var pub = push.GetProperty("pub");
            Assert.Equal((ulong)i, pub.GetProperty("offset").GetUInt64());
            Assert.Equal(i, pub.GetProperty("data").GetProperty("n").GetInt32());
            Assert.Equal(publisher.Socket is not null, pub.GetProperty("info").TryGetProperty("client", out _));
        }
    }

    [Fact]
    public async Task PublishedData_IsDeliveredCompactEvenWhenSentPrettyPrinted()
    {
        await using var subscriber = await _server.ConnectAsync();
        await subscriber.CommandAsync("""{"op":"subscribe","channel":"chat:pretty"}""");
        using var response = await _server.Api.PostAsync("/api/publish", new StringContent("{\"channel\":\"chat:pretty\",\n\"data\": {\n  \"a\": [1,\n 2]\n}}"));
        response.EnsureSuccessStatusCode();
        var push = await subscriber.NextPushAsync();
        Assert.Equal("""{"a":[1,2]}""", push.GetProperty("push").GetProperty("pub").GetProperty("data").GetRawText());
        Assert.False(push.GetProperty("push").GetProperty("pub").TryGetProperty("info", out _));
    }

    [Fact]
    public async Task Unsubscribe_StopsPushes_AndSecondUnsubscribeIsNotSubscribed()
    {
        await using var client = await _server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"chat:unsub"}""");
        var unsub = await client.CommandAsync("""{"op":"unsubscribe","channel":"chat:unsub"}""");
        Assert.True(unsub.TryGetProperty("result", out _));
        await _server.PublishAsync("chat:unsub", "1");
        // A ping round trip after the publish proves the push would have arrived before the pong.
        await client.CommandAsync("""{"op":"ping"}""");
        Assert.False(client.TryReadPush(out _));
        var again = await client.CommandAsync("""{"op":"unsubscribe","channel":"chat:unsub"}""");
        Assert.Equal("not_subscribed", again.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task History_ReturnsWindowSinceOffsetWithLimit()
    {
        for (var i = 1; i <= 8; i++)
        {
            await _server.PublishAsync("chat:hist", $$"""{"n":{{i}}}""");
        }
        await using var client = await _server.ConnectAsync();
        var head = await client.CommandAsync("""{"op":"history","channel":"chat:hist","limit":3}""");
        var result = head.GetProperty("result");
        Assert.Equal(8UL, result.GetProperty("offset").GetUInt64());
        Assert.Equal([6UL, 7UL, 8UL], result.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));

        var epoch = result.GetProperty("epoch").GetString();
        var since = await client.CommandAsync($$"""{"op":"history","channel":"chat:hist","since":{"offset":2,"epoch":"{{epoch}}"},"limit":2}""");
        Assert.Equal([3UL, 4UL], since.GetProperty("result").GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));

        var wrongEpoch = await client.CommandAsync("""{"op":"history","channel":"chat:hist","since":{"offset":2,"epoch":"nope"}}""");
        Assert.Equal("epoch_mismatch", wrongEpoch.GetProperty("error").GetProperty("code").GetString());
        var beyond = await client.CommandAsync($$$"""{"op":"history","channel":"chat:hist","since":{"offset":99,"epoch":"{{{epoch}}}"}}""");
        Assert.Equal("invalid_position", beyond.GetProperty("error").GetProperty("code").GetString());
        var badLimit = await client.CommandAsync("""{"op":"history","channel":"chat:hist","limit":0}""");
        Assert.Equal("bad_request", badLimit.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task HistorySize_KeepsOnlyTheNewestPublications()
    {
        for (var i = 1; i <= 9; i++)
        {
            await _server.PublishAsync("small:window", "{}");
        }
        await using var client = await _server.ConnectAsync();
        var reply = await client.CommandAsync("""{"op":"history","channel":"small:window"}""");
        Assert.Equal([5UL, 6UL, 7UL, 8UL, 9UL], reply.GetProperty("result").GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
    }

    [Fact]
    public async Task Presence_ListsSubscribedClients_AndForgetsThemOnDisconnect()
    {
        await using var alice = await _server.ConnectAsync();
        var bob = await _server.ConnectAsync();
        await alice.CommandAsync("""{"op":"subscribe","channel":"chat:room"}""");
        await bob.CommandAsync("""{"op":"subscribe","channel":"chat:room"}""");
        var presence = (await alice.CommandAsync("""{"op":"presence","channel":"chat:room"}""")).GetProperty("result").GetProperty("presence");
        Assert.Equal(2, presence.EnumerateObject().Count());

        await bob.DisposeAsync();
        await Wait.UntilAsync(() => _server.Node.GetPresence("chat:room").Count == 1, TimeSpan.FromSeconds(5), "bob leaves presence");
        presence = (await alice.CommandAsync("""{"op":"presence","channel":"chat:room"}""")).GetProperty("result").GetProperty("presence");
        Assert.Single(presence.EnumerateObject());

        var disabled = await alice.CommandAsync("""{"op":"presence","channel":"small:room"}""");
        Assert.Equal("not_available", disabled.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Publish_WhereClientsMayNot_IsPermissionDenied_AndConnectionGoesOn()
    {
        await using var client = await _server.ConnectAsync();
        var reply = await client.CommandAsync("""{"op":"publish","channel":"locked:x","data":{}}""");
        Assert.Equal("permission_denied", reply.GetProperty("error").GetProperty("code").GetString());
        var bare = await client.CommandAsync("""{"op":"publish","channel":"news","data":{}}""");
        Assert.Equal("permission_denied", bare.GetProperty("error").GetProperty("code").GetString());
        Assert.True((await client.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
    }

    [Fact]
    public async Task ClientWithoutSubprotocol_IsAccepted()
    {
        await using var client = await WsClient.OpenAsync(_server.WebSocketUri, subProtocol: null);
        Assert.Null(client.Socket.SubProtocol);
        var reply = await client.CommandAsync("""{"op":"connect"}""");
        Assert.True(reply.TryGetProperty("result", out _));
    }

    [Fact]
    public async Task CommandsBatchedInOneFrame_AreAnsweredInOrder()
    {
        await using var client = await WsClient.OpenAsync(_server.WebSocketUri);
        await client.SendRawAsync("{\"id\":1,\"op\":\"connect\"}\n{\"id\":2,\"op\":\"subscribe\",\"channel\":\"chat:batch\"}\r\n\n{\"id\":3,\"op\":\"ping\"}\n");
        for (var id = 1; id <= 3; id++)
        {
            var reply = await client.NextReplyAsync();
            Assert.Equal(id, reply.GetProperty("id").GetInt64());
            Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
        }
    }

    [Fact]
    public async Task Fanout_CoalescesQueuedPushesIntoFewerFrames()
    {
        await using var subscriber = await _server.ConnectAsync();
        await subscriber.CommandAsync("""{"op":"subscribe","channel":"chat:burst"}""");
        var framesBefore = subscriber.FramesReceived;
        // Publish straight into the node so that the pushes queue faster than one write each (all at once: fewer than
        // Herald:MaxDispatchBacklog, which a burst past would drop).
        const int Pushes = 900;
        var ns = _server.Node.Options.FindNamespace("chat")!;
        var publishes = Enumerable.Range(0, Pushes).Select(i => _server.Node.PublishAsync("chat:burst", ns, "{}"u8.ToArray(), null).AsTask());
        await Task.WhenAll(publishes);
        for (var i = 1; i <= Pushes; i++)
        {
            var push = await subscriber.NextPushAsync();
            Assert.Equal((ulong)i, push.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
        }
        Assert.True(subscriber.FramesReceived - framesBefore < Pushes, $"{subscriber.FramesReceived - framesBefore} frames for {Pushes} pushes");
    }
}
