using Herald.Tests.Infrastructure;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Herald.Integration.Tests;

/// <summary>Presence of polling clients (leases by client id) and display info, over real Kestrel.</summary>
public sealed class PollPresenceTests
{
    private const string Secret = "a-test-secret-that-is-long-enough-for-hs256";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private static async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(TestServer server, string url, string body, string? token = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        using var response = await server.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(TestServer server, string url)
    {
        using var response = await server.Http.GetAsync(url);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static async Task<JsonElement> PresenceAsync(TestServer server, string channel)
    {
        using var doc = JsonDocument.Parse(await server.Api.GetStringAsync($"/api/channels/{channel}/presence"));
        return doc.RootElement.GetProperty("presence").Clone();
    }

    private static string Token(string sub, string? info = null)
    {
        var claims = new Dictionary<string, object> { ["sub"] = sub };
        if (info is not null)
        {
            claims["info"] = JsonDocument.Parse(info).RootElement.Clone();
        }
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Expires = DateTime.UtcNow.AddMinutes(5),
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(Secret)), SecurityAlgorithms.HmacSha256),
        });
    }

    [Fact]
    public async Task PollWithClientId_IsPresent_WithUserAndInfo_BesideWebSocketSubscribers()
    {
        await using var server = await TestServer.StartAsync();
        await using var ws = await WsClient.OpenAsync(server.WebSocketUri);
        var connected = await ws.CommandAsync("""{"op":"connect","info":{"name":"Wendy"}}""");
        var wsId = connected.GetProperty("result").GetProperty("client").GetString()!;
        await ws.CommandAsync("""{"op":"subscribe","channel":"chat:pp"}""");

        var (longPoll, _) = await PostAsync(server, "/poll", """{"channels":{"chat:pp":{},"small:x":{}},"client":"long-1","info":{"name":"Pat","n":1}}""");
        Assert.Equal(HttpStatusCode.OK, longPoll);
        var (shortPoll, _) = await GetAsync(server, "/poll?channel=chat:pp&client=short_2&info=" + Uri.EscapeDataString("""{"name":"Sam"}"""));
        Assert.Equal(HttpStatusCode.OK, shortPoll);
        var (anonymous, _) = await GetAsync(server, "/poll?channel=chat:pp");
        Assert.Equal(HttpStatusCode.OK, anonymous);

        // Seen from the WebSocket client, as the presence op answers it.
        var reply = await ws.CommandAsync("""{"op":"presence","channel":"chat:pp"}""");
        var presence = reply.GetProperty("result").GetProperty("presence");
        Assert.Equal(new[] { "long-1", "short_2", wsId }.Order(StringComparer.Ordinal), presence.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        var pat = presence.GetProperty("long-1");
        Assert.Equal("", pat.GetProperty("user").GetString());
        Assert.Equal("long-1", pat.GetProperty("client").GetString());
        Assert.Equal("""{"name":"Pat","n":1}""", pat.GetProperty("info").GetRawText());
        Assert.Equal("Sam", presence.GetProperty("short_2").GetProperty("info").GetProperty("name").GetString());
        Assert.Equal("Wendy", presence.GetProperty(wsId).GetProperty("info").GetProperty("name").GetString());

        // The same answer over the server API and POST /cmd; a poll client without info has no "info".
        await GetAsync(server, "/poll?channel=chat:pp&client=plain");
        Assert.Equal(4, (await PresenceAsync(server, "chat:pp")).EnumerateObject().Count());
        var (cmd, body) = await PostAsync(server, "/cmd", """{"id":1,"op":"presence","channel":"chat:pp"}""");
        Assert.Equal(HttpStatusCode.OK, cmd);
        Assert.False(body.GetProperty("result").GetProperty("presence").GetProperty("plain").TryGetProperty("info", out _));
    }

    [Fact]
    public async Task PollLease_ExpiresAfterWaitPlusTimeout_AndIsSweptEvenIfNobodyReads()
    {
        await using var server = await TestServer.StartAsync(o => o.PollPresenceTimeout = TimeSpan.FromSeconds(1));
        var (status, _) = await GetAsync(server, "/poll?channel=chat:lease&client=c1");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True((await PresenceAsync(server, "chat:lease")).TryGetProperty("c1", out _));

        // Reading presence meets the expired lease, leaves it out and removes it.
        await Wait.UntilAsync(() => server.Node.GetPresence("chat:lease").All(m => m.Client != "c1"), Deadline, "the expired lease leaves presence");
        Assert.False((await PresenceAsync(server, "chat:lease")).TryGetProperty("c1", out _));
        Assert.Equal(0, server.Node.PollPresenceLeases());

        // A lease in a channel nobody reads is removed by the periodic sweep.
        await GetAsync(server, "/poll?channel=chat:unread&client=c2");
        Assert.Equal(1, server.Node.PollPresenceLeases());
        await Wait.UntilAsync(() => server.Node.PollPresenceLeases() == 0, Deadline, "the sweep removes the unread lease");
    }

    [Fact]
    public async Task HeldLongPoll_KeepsItsClientPresent_ForTheWholeWait()
    {
        await using var server = await TestServer.StartAsync(o => o.PollPresenceTimeout = TimeSpan.FromSeconds(1));
        var (_, first) = await GetAsync(server, "/poll?channel=chat:held");
        var head = first.GetProperty("channels").GetProperty("chat:held");
        var held = GetAsync(server, $"/poll?channel=chat:held&client=holder&wait=4&offset={head.GetProperty("offset")}&epoch={head.GetProperty("epoch").GetString()}");
        await Wait.UntilAsync(() => server.Node.GetPresence("chat:held").Any(m => m.Client == "holder"), Deadline, "the long poller appears");
        // Past the 1 s timeout alone, the lease still lasts because the poll is held for 4 s.
        var started = DateTime.UtcNow;
        await Wait.UntilAsync(() => DateTime.UtcNow - started > TimeSpan.FromSeconds(2), Deadline, "two seconds pass");
        Assert.Contains(server.Node.GetPresence("chat:held"), m => m.Client == "holder");
        Assert.Equal(HttpStatusCode.OK, (await held).Status);
    }

    [Theory]
    [InlineData("/poll?channel=chat:x&client=")]
    [InlineData("/poll?channel=chat:x&client=has%20space")]
    [InlineData("/poll?channel=chat:x&client=a/b")]
    [InlineData("/poll?channel=chat:x&client=x0123456789012345678901234567890123456789012345678901234567890123")]
    public async Task InvalidClientId_Is400(string url)
    {
        await using var server = await TestServer.StartAsync();
        var (status, body) = await GetAsync(server, url);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("bad_request", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("'client' must be 1 to 64 characters", body.GetProperty("error").GetProperty("message").GetString());

        var (post, postBody) = await PostAsync(server, "/poll", """{"channels":{"chat:x":{}},"client":"no.dots"}""");
        Assert.Equal(HttpStatusCode.BadRequest, post);
        Assert.Equal("bad_request", postBody.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(server, "/poll?channel=chat:x&client=" + new string('z', 64))).Status);
    }

    [Fact]
    public async Task ClientInfo_TooBigOrNotAnObject_IsRefused_OnConnectAndPolls()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxClientInfoBytes = 100);
        var big = $$"""{"name":"{{new string('x', 100)}}"}""";

        var (post, postBody) = await PostAsync(server, "/poll", $$$"""{"channels":{"chat:i":{}},"client":"c","info":{{{big}}}}""");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, post);
        Assert.Equal("payload_too_large", postBody.GetProperty("error").GetProperty("code").GetString());
        var (get, _) = await GetAsync(server, "/poll?channel=chat:i&client=c&info=" + Uri.EscapeDataString(big));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, get);
        var (notObject, notObjectBody) = await PostAsync(server, "/poll", """{"channels":{"chat:i":{}},"info":"Pat"}""");
        Assert.Equal(HttpStatusCode.BadRequest, notObject);
        Assert.Contains("'info' must be a JSON object", notObjectBody.GetProperty("error").GetProperty("message").GetString());
        var (notJson, _) = await GetAsync(server, "/poll?channel=chat:i&info=%7Bnope");
        Assert.Equal(HttpStatusCode.BadRequest, notJson);
        Assert.Empty(server.Node.GetPresence("chat:i"));

        // On a WebSocket the connect is refused, and the connection may connect again with an acceptable info.
        await using var ws = await WsClient.OpenAsync(server.WebSocketUri);
        var refused = await ws.CommandAsync($$"""{"id":1,"op":"connect","info":{{big}}}""");
        Assert.Equal("payload_too_large", refused.GetProperty("error").GetProperty("code").GetString());
        var array = await ws.CommandAsync("""{"id":2,"op":"connect","info":[1]}""");
        Assert.Equal("bad_request", array.GetProperty("error").GetProperty("code").GetString());
        var accepted = await ws.CommandAsync("""{"id":3,"op":"connect","info":null}""");
        Assert.True(accepted.TryGetProperty("result", out _), accepted.ToString());
        var (nullInfo, _) = await PostAsync(server, "/poll", """{"channels":{"chat:i":{}},"client":"c","info":null}""");
        Assert.Equal(HttpStatusCode.OK, nullInfo);
        Assert.False(Assert.Single(server.Node.GetPresence("chat:i")).Info.HasValue);
    }

    [Fact]
    public async Task TokenInfoClaim_BeatsClientInfo_AndAnotherUserCannotTakeOverALiveClientId()
    {
        await using var server = await TestServer.StartAsync(o => o.Token.Secret = Secret);
        var alice = Token("alice", """{"name":"Alice (verified)"}""");

        await using var ws = await WsClient.OpenAsync(server.WebSocketUri);
        var connected = await ws.CommandAsync($$$"""{"op":"connect","token":"{{{alice}}}","info":{"name":"Mallory"}}""");
        var wsId = connected.GetProperty("result").GetProperty("client").GetString()!;
        await ws.CommandAsync("""{"op":"subscribe","channel":"chat:t"}""");
        var (status, _) = await PostAsync(server, "/poll", """{"channels":{"chat:t":{}},"client":"alice-phone","info":{"name":"Mallory"}}""", alice);
        Assert.Equal(HttpStatusCode.OK, status);

        var presence = await PresenceAsync(server, "chat:t");
        Assert.Equal("Alice (verified)", presence.GetProperty(wsId).GetProperty("info").GetProperty("name").GetString());
        var phone = presence.GetProperty("alice-phone");
        Assert.Equal("alice", phone.GetProperty("user").GetString());
        Assert.Equal("Alice (verified)", phone.GetProperty("info").GetProperty("name").GetString());

        // Bob polls with alice's client id: his poll is answered, but alice's entry stays hers.
        var (bobStatus, _) = await PostAsync(server, "/poll", """{"channels":{"chat:t":{}},"client":"alice-phone","info":{"name":"Bob"}}""", Token("bob"));
        Assert.Equal(HttpStatusCode.OK, bobStatus);
        Assert.Equal("alice", (await PresenceAsync(server, "chat:t")).GetProperty("alice-phone").GetProperty("user").GetString());
    }

    // Issue 4: a client that moved from polling to a WebSocket was listed twice (its poll lease and its connection)
    // until the lease ran out.
    [Fact]
    public async Task ConnectWithTheClientsPollId_EndsItsPollLease_InEachChannelItSubscribes_AndOnlyForTheSameUser()
    {
        await using var server = await TestServer.StartAsync(o => o.Token.Secret = Secret);
        var alice = Token("alice");
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(server, "/poll", """{"channels":{"chat:moved":{},"chat:stays":{}},"client":"alice-1"}""", alice)).Status);
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(server, "/poll", """{"channels":{"chat:moved":{}},"client":"bob-1"}""", Token("bob"))).Status);
        Assert.Equal(["alice-1", "bob-1"], (await PresenceAsync(server, "chat:moved")).EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));

        await using var ws = await WsClient.OpenAsync(server.WebSocketUri);
        var connected = await ws.CommandAsync($$$"""{"op":"connect","token":"{{{alice}}}","client":"alice-1"}""");
        var wsId = connected.GetProperty("result").GetProperty("client").GetString()!;
        await ws.CommandAsync("""{"op":"subscribe","channel":"chat:moved"}""");

        // Listed once, under the connection's id; bob's lease is untouched.
        Assert.Equal(new[] { "bob-1", wsId }.Order(StringComparer.Ordinal), (await PresenceAsync(server, "chat:moved")).EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        // A channel the WebSocket has not subscribed to keeps the lease until it runs out.
        Assert.Equal(["alice-1"], (await PresenceAsync(server, "chat:stays")).EnumerateObject().Select(p => p.Name));

        // Another user naming bob's poll id does not end bob's lease.
        await using var mallory = await WsClient.OpenAsync(server.WebSocketUri);
        await mallory.CommandAsync($$$"""{"op":"connect","token":"{{{Token("mallory")}}}","client":"bob-1"}""");
        await mallory.CommandAsync("""{"op":"subscribe","channel":"chat:moved"}""");
        Assert.Contains("bob-1", (await PresenceAsync(server, "chat:moved")).EnumerateObject().Select(p => p.Name));

        // A poll id that breaks the rules is refused as on /poll, and the connection may try again.
        await using var bad = await WsClient.OpenAsync(server.WebSocketUri);
        var refused = await bad.CommandAsync("""{"op":"connect","client":"not an id!"}""");
        Assert.Equal("bad_request", refused.GetProperty("error").GetProperty("code").GetString());
        Assert.True((await bad.CommandAsync("""{"op":"connect"}""")).TryGetProperty("result", out _));
    }

    [Fact]
    public async Task LeasesPerChannel_AreBounded_AndThePollIsStillAnswered()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxPollPresencePerChannel = 2);
        foreach (var id in new[] { "a", "b", "c" })
        {
            var (status, body) = await GetAsync(server, $"/poll?channel=chat:full&client={id}");
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.True(body.GetProperty("channels").TryGetProperty("chat:full", out _));
        }
        Assert.Equal(["a", "b"], (await PresenceAsync(server, "chat:full")).EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        // Known clients keep polling; the bound is per channel.
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(server, "/poll?channel=chat:full&client=a&info=%7B%22name%22%3A%22A%22%7D")).Status);
        Assert.Equal("A", (await PresenceAsync(server, "chat:full")).GetProperty("a").GetProperty("info").GetProperty("name").GetString());
        await GetAsync(server, "/poll?channel=chat:other&client=c");
        Assert.True((await PresenceAsync(server, "chat:other")).TryGetProperty("c", out _));
        Assert.Equal(3, server.Node.PollPresenceLeases());
    }

    [Fact]
    public void Options_RefuseANonPositivePollPresenceTimeout()
    {
        Assert.Contains(new HeraldOptions { PollPresenceTimeout = TimeSpan.Zero }.Validate(), p => p.Contains("PollPresenceTimeout", StringComparison.Ordinal));
        Assert.DoesNotContain(new HeraldOptions().Validate(), p => p.Contains("PollPresenceTimeout", StringComparison.Ordinal));
    }
}
