using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Herald.AspNetCore.Proxy;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Integration.Tests;

/// <summary>
/// The hook proxy end to end: a real Herald (Kestrel on loopback) whose proxy points at a real backend process, driven
/// by a WebSocket client and by HTTP clients (<c>/cmd</c>, <c>/poll</c>): every hook on each transport it applies to,
/// and a backend that is down, slow or answers garbage.
/// </summary>
public sealed class ProxyEndToEndTests(ProxyBackend backend) : IClassFixture<ProxyBackend>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private Task<TestServer> StartAsync(Action<ProxyOptions>? proxy = null, Action<HeraldOptions>? herald = null) =>
        TestServer.StartAsync(herald, configureServices: services => services.AddHeraldProxy(o =>
        {
            o.Connect.Url = backend.Url("/connect");
            o.Subscribe.Url = backend.Url("/subscribe");
            o.Publish.Url = backend.Url("/publish");
            o.Rpc.Url = backend.Url("/rpc");
            o.ForwardHeaders.Add("Cookie");
            proxy?.Invoke(o);
        }));

    private static string? ErrorCode(JsonElement reply) =>
        reply.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString() : null;

    private static HeraldError ErrorOf(JsonElement reply)
    {
        Assert.True(reply.TryGetProperty("error", out var error), $"expected an error, got {reply}");
        return new HeraldError(error.GetProperty("code").GetString()!, error.GetProperty("message").GetString()!);
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient http, HttpMethod method, string path, string? body = null, string? token = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static Task<(HttpStatusCode Status, JsonElement Body)> CmdAsync(TestServer server, string body, string? token = null) =>
        SendAsync(server.Http, HttpMethod.Post, "/cmd", body, token);

    // ---- WebSocket

    [Fact]
    public async Task WebSocket_EveryHook_GoesThroughTheBackend()
    {
        await using var server = await StartAsync();
        await using var bob = await WsClient.OpenAsync(server.WebSocketUri);
        await using var watcher = await server.ConnectAsync();

        // connect: no token validation is configured, yet the backend vouches for bob, with grants.
        var connected = await bob.CommandAsync("""{"op":"connect","token":"as-bob"}""");
        Assert.True(connected.TryGetProperty("result", out var connectResult), connected.GetRawText());
        Assert.Equal("bob", connectResult.GetProperty("user").GetString());

        // subscribe: allowed with data attached, or refused with the backend's words.
        var welcome = await bob.CommandAsync("""{"op":"subscribe","channel":"chat:welcome"}""");
        Assert.Equal("""{"welcome":"bob"}""", welcome.GetProperty("result").GetProperty("data").GetRawText());
        Assert.Equal(new HeraldError("permission_denied", "members only, bob"), ErrorOf(await bob.CommandAsync("""{"op":"subscribe","channel":"chat:members"}""")));

        // publish: replaced, refused, or as sent; subscribers see what the backend decided.
        Assert.Null(ErrorCode(await watcher.CommandAsync("""{"op":"subscribe","channel":"chat:upper"}""")));
        Assert.Null(ErrorCode(await bob.CommandAsync("""{"op":"publish","channel":"chat:upper","data":{"text":"hi"}}""")));
        Assert.Equal(new HeraldError("empty_message", "say something"), ErrorOf(await bob.CommandAsync("""{"op":"publish","channel":"chat:upper","data":{"text":""}}""")));
        var push = await watcher.NextPushAsync();
        Assert.Equal("""{"text":"HI"}""", push.GetProperty("push").GetProperty("pub").GetProperty("data").GetRawText());
        Assert.Equal("bob", push.GetProperty("push").GetProperty("pub").GetProperty("info").GetProperty("user").GetString());

        // rpc: answered with data, or the backend's error.
        var echo = (await bob.CommandAsync("""{"op":"rpc","method":"echo","data":{"x":3}}""")).GetProperty("result").GetProperty("data").GetProperty("body");
        Assert.Equal("echo", echo.GetProperty("method").GetString());
        Assert.Equal("""{"x":3}""", echo.GetProperty("data").GetRawText());
        Assert.Equal("bob", echo.GetProperty("user").GetString());
        Assert.Equal("websocket", echo.GetProperty("transport").GetString());
        Assert.Equal(new HeraldError("insufficient_funds", "you have 0 coins"), ErrorOf(await bob.CommandAsync("""{"op":"rpc","method":"pay"}""")));
    }

    [Fact]
    public async Task WebSocket_ConnectRefusedByTheBackend_TheClientGetsItsWords_ThenClose4003()
    {
        await using var server = await StartAsync();
        await using var client = await WsClient.OpenAsync(server.WebSocketUri);

        Assert.Equal(new HeraldError("unauthorized", "your session has ended"), ErrorOf(await client.CommandAsync("""{"op":"connect","token":"refuse"}""")));
        Assert.Equal((WebSocketCloseStatus)CloseCodes.Unauthorized, await client.WaitClosedAsync());
    }

    [Fact]
    public async Task WebSocket_TheHandshakesCookie_ReachesTheBackend_OnConnect()
    {
        await using var server = await StartAsync();
        await using var client = await WsClient.OpenAsync(server.WebSocketUri, headers: new Dictionary<string, string>
        {
            ["Cookie"] = "session=s3cr3t",
            ["X-Not-Listed"] = "no",
        });
        await using var observer = await server.ConnectAsync();

        // The backend puts what it received into the connection's info, which presence shows.
        Assert.Null(ErrorCode(await client.CommandAsync("""{"op":"connect","token":"echo"}""")));
        Assert.Null(ErrorCode(await client.CommandAsync("""{"op":"subscribe","channel":"chat:room"}""")));
        var presence = (await observer.CommandAsync("""{"op":"presence","channel":"chat:room"}""")).GetProperty("result");
        var seen = presence.GetProperty("presence").EnumerateObject().Single().Value.GetProperty("info");
        Assert.Equal("session=s3cr3t", seen.GetProperty("headers").GetProperty("cookie").GetString());
        Assert.False(seen.GetProperty("headers").TryGetProperty("x-not-listed", out _));
        Assert.Equal("websocket", seen.GetProperty("body").GetProperty("transport").GetString());
    }

    // ---- HTTP: /cmd and /poll

    [Fact]
    public async Task Cmd_ConnectPublishRpc_GoThroughTheBackend()
    {
        await using var server = await StartAsync();

        // connect runs per request: the bearer token goes to the backend, which accepts bob or refuses.
        var (refused, refusal) = await CmdAsync(server, """{"op":"rpc","method":"echo"}""", token: "refuse");
        Assert.Equal(HttpStatusCode.Unauthorized, refused);
        Assert.Equal(new HeraldError("unauthorized", "your session has ended"), ErrorOf(refusal));

        var (ok, reply) = await CmdAsync(server, """{"id":1,"op":"rpc","method":"echo","data":[1,2]}""", token: "as-bob");
        Assert.Equal(HttpStatusCode.OK, ok);
        var echo = reply.GetProperty("result").GetProperty("data").GetProperty("body");
        Assert.Equal("http", echo.GetProperty("transport").GetString());
        Assert.Equal("bob", echo.GetProperty("user").GetString());
        Assert.Equal("[1,2]", echo.GetProperty("data").GetRawText());

        var (paid, payment) = await CmdAsync(server, """{"op":"rpc","method":"pay"}""", token: "as-bob");
        Assert.Equal(HttpStatusCode.BadRequest, paid); // a code Herald does not know is a 400
        Assert.Equal(new HeraldError("insufficient_funds", "you have 0 coins"), ErrorOf(payment));

        var (published, _) = await CmdAsync(server, """{"op":"publish","channel":"chat:upper-cmd","data":{"text":"yo"}}""", token: "as-bob");
        Assert.Equal(HttpStatusCode.OK, published);
        var (emptyStatus, empty) = await CmdAsync(server, """{"op":"publish","channel":"chat:upper-cmd","data":{"text":""}}""", token: "as-bob");
        Assert.Equal(HttpStatusCode.BadRequest, emptyStatus);
        Assert.Equal("empty_message", ErrorOf(empty).Code);
    }

    [Fact]
    public async Task Poll_ConnectAndSubscribe_GoThroughTheBackend()
    {
        await using var server = await StartAsync();

        var (refused, refusal) = await SendAsync(server.Http, HttpMethod.Get, "/poll?channel=chat:open", token: "refuse");
        Assert.Equal(HttpStatusCode.Unauthorized, refused);
        Assert.Equal("your session has ended", ErrorOf(refusal).Message);

        var (members, denied) = await SendAsync(server.Http, HttpMethod.Get, "/poll?channel=chat:members", token: "as-bob");
        Assert.Equal(HttpStatusCode.Forbidden, members);
        // A poll names several channels, so the refusal says which: the backend's message after the channel's name.
        Assert.Equal(new HeraldError("permission_denied", "chat:members: members only, bob"), ErrorOf(denied));

        await server.PublishAsync("chat:open", """{"n":1}""");
        var (ok, answer) = await SendAsync(server.Http, HttpMethod.Get, "/poll?channel=chat:open", token: "as-bob");
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.Equal(1UL, answer.GetProperty("channels").GetProperty("chat:open").GetProperty("offset").GetUInt64());
    }

    // ---- a backend that fails, end to end

    [Fact]
    public async Task BackendDown_WebSocketAndCmd_GetUnavailable_AndTheConnectionGoesOn()
    {
        await using var server = await StartAsync(o =>
        {
            o.Connect.Url = null;
            o.Rpc.Url = ProxyBackend.DownUrl();
        });
        await using var client = await server.ConnectAsync();

        var down = ErrorOf(await client.CommandAsync("""{"op":"rpc","method":"echo"}"""));
        Assert.Equal(new HeraldError(ErrorCodes.Unavailable, "the application backend cannot be reached"), down);
        Assert.Null(ErrorCode(await client.CommandAsync("""{"op":"ping"}""")));

        var (status, body) = await CmdAsync(server, """{"op":"rpc","method":"echo"}""");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal(ErrorCodes.Unavailable, ErrorOf(body).Code);
    }

    [Fact]
    public async Task BackendSlow_PublishGetsUnavailableWhenTheProxyTimeoutPasses_OthersGoOn()
    {
        await using var server = await StartAsync(o =>
        {
            o.Connect.Url = null;
            o.Publish.Url = backend.Url("/slow");
            o.Timeout = TimeSpan.FromMilliseconds(400);
        });
        await using var slow = await server.ConnectAsync();
        await using var other = await server.ConnectAsync();

        var clock = Stopwatch.StartNew();
        var publishing = slow.CommandAsync("""{"op":"publish","channel":"chat:a","data":{"text":"x"}}""");
        // Another client's call is answered while the publish waits for the backend.
        Assert.Null(ErrorCode(await other.CommandAsync("""{"op":"rpc","method":"echo"}""")));
        var error = ErrorOf(await Wait.ForAsync(publishing, Bound, "the slow publish's answer"));
        clock.Stop();

        Assert.Equal(ErrorCodes.Unavailable, error.Code);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(350), TimeSpan.FromSeconds(5));
        Assert.Null(ErrorCode(await slow.CommandAsync("""{"op":"ping"}""")));
    }

    [Fact]
    public async Task BackendSlow_ProxyAndHandlerTimeoutsEqual_TheClientGetsTheProxysUnavailable_NotTheHandlersInternal()
    {
        // Equal timeouts, as with the defaults (5 s both): the proxy gives up 250 ms earlier, so its answer wins.
        await using var server = await StartAsync(
            o =>
            {
                o.Connect.Url = null;
                o.Rpc.Url = backend.Url("/slow");
                o.Timeout = TimeSpan.FromSeconds(2.5);
            },
            h => h.HandlerTimeout = TimeSpan.FromSeconds(2.5));
        await using var client = await server.ConnectAsync();

        var error = ErrorOf(await client.CommandAsync("""{"op":"rpc","method":"wait"}"""));

        Assert.Equal(new HeraldError(ErrorCodes.Unavailable, "the application backend did not answer within 2.25 s"), error);
    }

    [Fact]
    public async Task BackendAnswersGarbage_Internal_OnWebSocketAndPoll()
    {
        await using var server = await StartAsync(o =>
        {
            o.Connect.Url = null;
            o.Subscribe.Url = backend.Url("/canned/not-json");
        });
        await using var client = await server.ConnectAsync();

        Assert.Equal(new HeraldError(ErrorCodes.Internal, "the application backend's answer is invalid"),
            ErrorOf(await client.CommandAsync("""{"op":"subscribe","channel":"chat:a"}""")));

        var (status, body) = await SendAsync(server.Http, HttpMethod.Get, "/poll?channel=chat:a");
        Assert.Equal(HttpStatusCode.InternalServerError, status);
        Assert.Equal(ErrorCodes.Internal, ErrorOf(body).Code);
    }
}
