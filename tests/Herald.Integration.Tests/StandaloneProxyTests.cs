using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;

namespace Herald.Integration.Tests;

/// <summary>The standalone server (a real <c>herald</c> process) turns the hook proxy on from its configuration.</summary>
public sealed class StandaloneProxyTests(ProxyBackend backend) : IClassFixture<ProxyBackend>
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AProxyUrlThatIsNotHttp_StopsTheServerAtStart_NamingTheKey()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__Proxy__Connect__Url"] = "ftp://127.0.0.1/connect",
        }, StartTimeout);

        Assert.True(server.HasExited, $"the server started with an ftp:// proxy URL:\n{server.Output}");
        Assert.NotEqual(0, server.ExitCode);
        Assert.Contains("Herald:Proxy:Connect:Url 'ftp://127.0.0.1/connect' must be an absolute http:// or https:// URL", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoProxyUrl_TheProxyIsNotRegistered_SoItsOtherKeysAreNotChecked()
    {
        // A bad timeout alone does not stop the server: without a hook URL there is no proxy to configure.
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__Proxy__Timeout"] = "00:00:00",
        }, StartTimeout);

        Assert.False(server.HasExited, server.Output);
    }

    [Fact]
    public async Task ValidProxyUrls_TheServerStarts()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__Proxy__Rpc__Url"] = backend.Url("/rpc"),
            ["Herald__Proxy__Timeout"] = "00:00:02",
        }, StartTimeout);

        Assert.False(server.HasExited, server.Output);
    }

    [Fact]
    public async Task TheStandaloneServer_ProxiesEveryHook_OverWebSocketCmdAndPoll()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            // No token validation and no anonymous access: only the backend lets anyone in.
            ["Herald__Proxy__Connect__Url"] = backend.Url("/connect"),
            ["Herald__Proxy__Subscribe__Url"] = backend.Url("/subscribe"),
            ["Herald__Proxy__Publish__Url"] = backend.Url("/publish"),
            ["Herald__Proxy__Rpc__Url"] = backend.Url("/rpc"),
            ["Herald__Namespaces__chat__AllowClientPublish"] = "true",
        }, StartTimeout);
        Assert.False(server.HasExited, server.Output);

        await using var refused = await WsClient.OpenAsync(server.WebSocketUri);
        var refusal = await refused.CommandAsync("""{"op":"connect","token":"refuse"}""");
        Assert.Equal("your session has ended", refusal.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal((WebSocketCloseStatus)CloseCodes.Unauthorized, await refused.WaitClosedAsync());

        await using var bob = await WsClient.OpenAsync(server.WebSocketUri);
        Assert.Equal("bob", (await bob.CommandAsync("""{"op":"connect","token":"as-bob"}""")).GetProperty("result").GetProperty("user").GetString());
        var welcome = await bob.CommandAsync("""{"op":"subscribe","channel":"chat:welcome"}""");
        Assert.Equal("""{"welcome":"bob"}""", welcome.GetProperty("result").GetProperty("data").GetRawText());
        Assert.True((await bob.CommandAsync("""{"op":"publish","channel":"chat:upper","data":{"text":"hi"}}""")).TryGetProperty("result", out _));
        var echo = await bob.CommandAsync("""{"op":"rpc","method":"echo","data":{"x":1}}""");
        Assert.Equal("websocket", echo.GetProperty("result").GetProperty("data").GetProperty("body").GetProperty("transport").GetString());

        using var cmd = new HttpRequestMessage(HttpMethod.Post, "/cmd") { Content = new StringContent("""{"op":"history","channel":"chat:upper"}""", Encoding.UTF8, "application/json") };
        cmd.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "as-bob");
        using var history = await server.Http.SendAsync(cmd);
        Assert.Equal(HttpStatusCode.OK, history.StatusCode);
        using var published = JsonDocument.Parse(await history.Content.ReadAsStringAsync());
        Assert.Equal("""{"text":"HI"}""", published.RootElement.GetProperty("result").GetProperty("publications")[0].GetProperty("data").GetRawText());

        using var poll = new HttpRequestMessage(HttpMethod.Get, "/poll?channel=chat:members");
        poll.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "as-bob");
        using var denied = await server.Http.SendAsync(poll);
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Contains("members only, bob", await denied.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
