using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Integration.Tests;

/// <summary>
/// The server API's user commands (<c>/api/disconnect</c>, <c>/api/subscribe</c>, <c>/api/unsubscribe</c> and
/// <see cref="IHeraldServer"/>) on two nodes sharing one memory store: a command given to node A reaches the user's
/// connections on node B.
/// </summary>
public sealed class ServerSideTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private TestCluster _cluster = null!;

    private TestServer A => _cluster[0];

    private TestServer B => _cluster[1];

    public async Task InitializeAsync() => _cluster = await TestServer.StartClusterAsync(2, configureServices: UserAuthenticator.Use);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    private static Task<WsClient> ConnectAsAsync(TestServer server, string user) => server.ConnectAsync(UserAuthenticator.TokenFor(user));

    private static async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(TestServer server, string path, string json)
    {
        using var response = await server.Api.PostAsync(path, new StringContent(json));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static async Task<JsonElement> PushOfAsync(WsClient client, string kind)
    {
        var push = (await client.NextPushAsync(Deadline)).GetProperty("push");
        Assert.True(push.TryGetProperty(kind, out var body), $"expected a '{kind}' push, got {push}");
        return body;
    }

    [Fact]
    public async Task Disconnect_OnNodeA_ClosesTheUsersConnectionsOnBothNodesWithTheCode_AndNobodyElses()
    {
        await using var aliceOnA = await ConnectAsAsync(A, "alice");
        await using var aliceOnB = await ConnectAsAsync(B, "alice");
        await using var alsoAliceOnB = await ConnectAsAsync(B, "alice");
        await using var bobOnB = await ConnectAsAsync(B, "bob");

        var (status, body) = await PostAsync(A, "/api/disconnect", """{"user":"alice","code":4501,"reason":"banned"}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(JsonValueKind.Object, body.ValueKind);

        foreach (var alice in new[] { aliceOnA, aliceOnB, alsoAliceOnB })
        {
            Assert.Equal((WebSocketCloseStatus)4501, await alice.WaitClosedAsync(Deadline));
            Assert.Equal("banned", alice.Socket.CloseStatusDescription);
        }
        Assert.True((await bobOnB.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
        await Wait.UntilAsync(() => A.Node.ConnectionsOf("alice") + B.Node.ConnectionsOf("alice") == 0, Deadline, "alice's sessions to end");
        Assert.Equal(1, B.Node.ConnectionsOf("bob"));
    }

    [Fact]
    public async Task Disconnect_WithoutCode_ClosesWith4100()
    {
        await using var alice = await ConnectAsAsync(B, "alice");
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(A, "/api/disconnect", """{"user":"alice"}""")).Status);
        Assert.Equal((WebSocketCloseStatus)CloseCodes.ServerDisconnect, await alice.WaitClosedAsync(Deadline));
        Assert.Equal("disconnected by the server", alice.Socket.CloseStatusDescription);
    }

    [Fact]
    public async Task ServerSubscribe_OfAMsgPackConnection_RecoversBytesAsBin_AndIHeraldServerPublishesBytes()
    {
        const string Channel = "chat:server-sub-bin";
        await using var alice = await MsgPackWsClient.OpenAsync(B.WebSocketUri);
        var connected = await alice.CommandAsync(new() { ["op"] = "connect", ["token"] = UserAuthenticator.TokenFor("alice") });
        Assert.True(connected.ContainsKey("result"), MsgPackWsClient.Describe(connected));
        var server = A.Node.Server;
        var first = await server.PublishBytesAsync(Channel, new byte[] { 0, 255 });
        Assert.True(first.TryGetValue(out var position, out _));

        var (status, _) = await PostAsync(A, "/api/subscribe", $$$"""{"user":"alice","channel":"{{{Channel}}}","since":{"offset":0,"epoch":"{{{position.Epoch}}}"}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var subscribed = MsgPackWsClient.Map((await alice.NextPushAsync(Deadline))["subscribe"]);
        var recovered = Assert.IsType<List<object?>>(subscribed["publications"]);
        Assert.Equal(new byte[] { 0, 255 }, MsgPackWsClient.Map(Assert.Single(recovered))["data"]);

        Assert.True((await server.PublishBytesAsync(Channel, new byte[] { 7 })).TryGetValue(out _, out _));
        Assert.Equal(new byte[] { 7 }, (await alice.NextPubAsync(Deadline))["data"]);
        var tooLarge = await server.PublishBytesAsync(Channel, new byte[A.Node.Options.MaxMessageBytes + 1]);
        Assert.Equal(ErrorCodes.PayloadTooLarge, tooLarge.Error?.Code);
    }

    [Fact]
    public async Task ServerSubscribe_OnA_OfAUserOnB_PushesTheRecoveredPublications_ThenLivePublications_AndListsPresence()
    {
        const string Channel = "chat:server-sub";
        await using var alice = await ConnectAsAsync(B, "alice");
        await using var bob = await ConnectAsAsync(B, "bob");
        for (var i = 1; i <= 3; i++)
        {
            await A.PublishAsync(Channel, $$"""{"n":{{i}}}""");
        }
        using var history = JsonDocument.Parse(await A.Api.GetStringAsync($"/api/channels/{Channel}/history"));
        var epoch = history.RootElement.GetProperty("epoch").GetString();

        var (status, _) = await PostAsync(A, "/api/subscribe", $$$"""{"user":"alice","channel":"{{{Channel}}}","since":{"offset":1,"epoch":"{{{epoch}}}"}}""");
        Assert.Equal(HttpStatusCode.OK, status);

        var push = (await alice.NextPushAsync(Deadline)).GetProperty("push");
        Assert.Equal(Channel, push.GetProperty("channel").GetString());
        var subscribed = push.GetProperty("subscribe");
        Assert.Equal(epoch, subscribed.GetProperty("epoch").GetString());
        Assert.Equal(3UL, subscribed.GetProperty("offset").GetUInt64());
        Assert.True(subscribed.GetProperty("recovered").GetBoolean());
        Assert.Equal([2UL, 3UL], subscribed.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));

        await A.PublishAsync(Channel, """{"n":4}""");
        var pub = await PushOfAsync(alice, "pub");
        Assert.Equal(4UL, pub.GetProperty("offset").GetUInt64());

        using var presence = JsonDocument.Parse(await A.Api.GetStringAsync($"/api/channels/{Channel}/presence"));
        var member = Assert.Single(presence.RootElement.GetProperty("presence").EnumerateObject());
        Assert.Equal("alice", member.Value.GetProperty("user").GetString());
        Assert.False(bob.TryReadPush(out var stray), $"bob got a push: {stray}");

        // The connection holds a normal subscription: a client subscribe to the channel is refused as a duplicate.
        var again = await alice.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");
        Assert.Equal(ErrorCodes.AlreadySubscribed, again.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task ServerSubscribe_WithoutSince_PushesTheHead_AndASecondCallChangesNothing()
    {
        const string Channel = "chat:server-head";
        await A.PublishAsync(Channel, """{"n":1}""");
        await using var alice = await ConnectAsAsync(B, "alice");

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(A, "/api/subscribe", $$"""{"user":"alice","channel":"{{Channel}}"}""")).Status);
        var subscribed = await PushOfAsync(alice, "subscribe");
        Assert.Equal(1UL, subscribed.GetProperty("offset").GetUInt64());
        Assert.False(subscribed.TryGetProperty("recovered", out _));
        Assert.Empty(subscribed.GetProperty("publications").EnumerateArray());

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(B, "/api/subscribe", $$"""{"user":"alice","channel":"{{Channel}}"}""")).Status);
        await A.PublishAsync(Channel, """{"n":2}""");
        // The next push is the publication: the second subscribe pushed nothing and did not subscribe twice.
        Assert.Equal(2UL, (await PushOfAsync(alice, "pub")).GetProperty("offset").GetUInt64());
        await A.PublishAsync(Channel, """{"n":3}""");
        Assert.Equal(3UL, (await PushOfAsync(alice, "pub")).GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task ServerUnsubscribe_PushesUnsubscribe_StopsDelivery_AndRemovesPresence()
    {
        const string Channel = "chat:server-unsub";
        const string Fence = "chat:server-unsub-fence";
        await using var alice = await ConnectAsAsync(B, "alice");
        await alice.CommandAsync($$"""{"op":"subscribe","channel":"{{Fence}}"}""");
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(A, "/api/subscribe", $$"""{"user":"alice","channel":"{{Channel}}"}""")).Status);
        await PushOfAsync(alice, "subscribe");
        await PresenceReachesAsync(Channel, 1);

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(A, "/api/unsubscribe", $$"""{"user":"alice","channel":"{{Channel}}"}""")).Status);
        var push = (await alice.NextPushAsync(Deadline)).GetProperty("push");
        Assert.Equal(Channel, push.GetProperty("channel").GetString());
        Assert.Equal("unsubscribed by the server", push.GetProperty("unsubscribe").GetProperty("reason").GetString());
        await PresenceReachesAsync(Channel, 0);

        // Publications of the channel no longer reach her; the fence, published after, does (the fan-out keeps order).
        await A.PublishAsync(Channel, """{"n":1}""");
        await A.PublishAsync(Fence, """{"n":1}""");
        var next = (await alice.NextPushAsync(Deadline)).GetProperty("push");
        Assert.Equal(Fence, next.GetProperty("channel").GetString());

        // The connection is no longer subscribed: the client may subscribe again.
        Assert.True((await alice.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).TryGetProperty("result", out _));
    }

    /// <summary>Waits until the channel's presence, as node A lists it, has <paramref name="count"/> members.</summary>
    private async Task PresenceReachesAsync(string channel, int count)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            using var presence = JsonDocument.Parse(await A.Api.GetStringAsync($"/api/channels/{channel}/presence"));
            var members = presence.RootElement.GetProperty("presence").EnumerateObject().Count();
            if (members == count)
            {
                return;
            }
            Assert.True(DateTime.UtcNow < deadline, $"{channel} has {members} members, expected {count}");
            await Task.Delay(10);
        }
    }

    [Theory]
    [InlineData("/api/disconnect", """{"user":"alice","code":4000}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"user":"alice","code":4099}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"user":"alice","code":1000}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"user":"alice","code":5000}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"code":4100}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"user":"","code":4100}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"user":"alice","reason":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """{"user":"alice","code":"4100"}""", ErrorCodes.BadRequest)]
    [InlineData("/api/disconnect", """not json""", ErrorCodes.BadRequest)]
    [InlineData("/api/subscribe", """{"user":"alice","channel":"nope:x"}""", ErrorCodes.InvalidChannel)]
    [InlineData("/api/subscribe", """{"user":"alice","channel":"bad channel"}""", ErrorCodes.InvalidChannel)]
    [InlineData("/api/subscribe", """{"user":"alice"}""", ErrorCodes.InvalidChannel)]
    [InlineData("/api/subscribe", """{"channel":"chat:x"}""", ErrorCodes.BadRequest)]
    [InlineData("/api/subscribe", """{"user":"alice","channel":"chat:never","since":{"offset":5}}""", ErrorCodes.BadRequest)]
    [InlineData("/api/unsubscribe", """{"user":"alice","channel":"nope:x"}""", ErrorCodes.InvalidChannel)]
    [InlineData("/api/unsubscribe", """{"channel":"chat:x"}""", ErrorCodes.BadRequest)]
    public async Task BadInput_GetsADocumentedError_AndTouchesNoConnection(string path, string body, string code)
    {
        await using var alice = await ConnectAsAsync(B, "alice");
        var (status, answer) = await PostAsync(A, path, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(code, answer.GetProperty("error").GetProperty("code").GetString());
        Assert.True((await alice.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
        Assert.False(alice.TryReadPush(out var push), $"alice got a push: {push}");
    }

    [Fact]
    public async Task ServerSubscribe_SinceBeyondTheHead_IsInvalidPosition()
    {
        await A.PublishAsync("chat:beyond", """{"n":1}""");
        using var history = JsonDocument.Parse(await A.Api.GetStringAsync("/api/channels/chat:beyond/history"));
        var epoch = history.RootElement.GetProperty("epoch").GetString();
        var (status, answer) = await PostAsync(A, "/api/subscribe", $$$"""{"user":"alice","channel":"chat:beyond","since":{"offset":7,"epoch":"{{{epoch}}}"}}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(ErrorCodes.InvalidPosition, answer.GetProperty("error").GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("/api/disconnect")]
    [InlineData("/api/subscribe")]
    [InlineData("/api/unsubscribe")]
    public async Task UserCommands_WithoutTheApiKey_AreUnauthorized(string path)
    {
        using var response = await A.Http.PostAsync(path, new StringContent("""{"user":"alice","channel":"chat:x"}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Theory]
    [InlineData("/api/disconnect")]
    [InlineData("/api/subscribe")]
    [InlineData("/api/unsubscribe")]
    public async Task UserCommands_BodyOver4KiB_IsPayloadTooLarge(string path)
    {
        var (status, answer) = await PostAsync(A, path, $$"""{"user":"{{new string('a', 4096)}}","channel":"chat:x"}""");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal(ErrorCodes.PayloadTooLarge, answer.GetProperty("error").GetProperty("code").GetString());
    }

    // The README's and ARCHITECTURE.md's example of injecting IHeraldServer, as written there.
    [Fact]
    public async Task DocsExample_AnEndpointInjectingIHeraldServer_SubscribesTheCallersConnections()
    {
        await using var server = await TestServer.StartAsync(configureServices: UserAuthenticator.Use, configureApp: app =>
        {
            // Stands in for the application's own authentication.
            app.Use((context, next) =>
            {
                context.User = new System.Security.Claims.ClaimsPrincipal(new System.Security.Claims.ClaimsIdentity(
                    [new System.Security.Claims.Claim(System.Security.Claims.ClaimTypes.Name, context.Request.Headers["X-User"].ToString())], "test"));
                return next(context);
            });
            app.MapPost("/rooms/{room}/join", async (string room, System.Security.Claims.ClaimsPrincipal user, IHeraldServer herald) =>
                await herald.SubscribeAsync(user.Identity!.Name!, $"chat:{room}") is { } error ? Results.BadRequest(error) : Results.Ok());
        });
        await using var alice = await ConnectAsAsync(server, "alice");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/rooms/7/join");
        request.Headers.Add("X-User", "alice");
        using var response = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var push = (await alice.NextPushAsync(Deadline)).GetProperty("push");
        Assert.Equal("chat:7", push.GetProperty("channel").GetString());
        Assert.True(push.TryGetProperty("subscribe", out _));
    }

    [Fact]
    public async Task InjectedServer_IsTheNodesServer_AndAnswersInTypes()
    {
        var server = A.Services.GetRequiredService<IHeraldServer>();
        Assert.Same(A.Node.Server, server);
        await using var alice = await ConnectAsAsync(B, "alice");

        using var data = JsonDocument.Parse("""{"text":"from the app"}""");
        var published = await server.PublishAsync("locked:app", data.RootElement);
        Assert.Null(published.Error); // the server may publish where clients may not
        Assert.Equal(1UL, published.Value.Offset);
        Assert.Equal(ErrorCodes.InvalidChannel, (await server.PublishAsync("nope:x", data.RootElement)).Error?.Code);
        // The same idempotency rules as /api/publish: a repeat answers the first position and publishes nothing.
        var keyed = new PublishOptions { IdempotencyKey = "app-1" };
        var once = await server.PublishAsync("locked:app", data.RootElement, keyed);
        Assert.Equal(once.Value, (await server.PublishAsync("locked:app", data.RootElement, keyed)).Value);
        Assert.Equal(2UL, once.Value.Offset);
        Assert.Equal(ErrorCodes.BadRequest, (await server.PublishAsync("locked:app", data.RootElement, new PublishOptions { IdempotencyKey = "" })).Error?.Code);
        var newest = await server.ReadHistoryAsync("locked:app", new HistoryQuery { Limit = 1, Reverse = true });
        Assert.Equal(2UL, Assert.Single(newest.Value.Publications).Offset);
        Assert.Equal(2UL, newest.Value.Next?.Offset); // the next page reads before it

        var read = await server.ReadHistoryAsync("locked:app", new HistoryQuery { Offset = 0, Limit = 1 });
        using (var stored = JsonDocument.Parse(Assert.Single(read.Value.Publications).Data))
        {
            Assert.Equal("from the app", stored.RootElement.GetProperty("text").GetString());
        }
        Assert.Equal(ErrorCodes.EpochMismatch, (await server.ReadHistoryAsync("locked:app", new HistoryQuery { Offset = 0, Epoch = "other" })).Error?.Code);

        Assert.Null(await server.SubscribeAsync("alice", "chat:injected"));
        await PushOfAsync(alice, "subscribe");
        await PresenceReachesAsync("chat:injected", 1);
        Assert.Equal("alice", Assert.Single((await server.GetPresenceAsync("chat:injected")).Value).User);
        Assert.Equal(ErrorCodes.NotAvailable, (await server.GetPresenceAsync("news")).Error?.Code);

        Assert.Equal(ErrorCodes.BadRequest, (await server.DisconnectAsync("alice", code: 4004))?.Code);
        Assert.Null(await server.DisconnectAsync("alice", CloseCodes.ServerDisconnectNoReconnect, "logged out"));
        Assert.Equal((WebSocketCloseStatus)4500, await alice.WaitClosedAsync(Deadline));
    }
}
