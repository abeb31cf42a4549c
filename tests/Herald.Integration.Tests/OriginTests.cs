using System.Net;
using System.Net.WebSockets;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class OriginTests
{
    private static async Task<ClientWebSocket> OpenWithOriginAsync(TestServer server, string origin)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Origin", origin);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(server.WebSocketUri, cts.Token);
        return socket;
    }

    [Fact]
    public async Task WebSocketFromAnotherOrigin_IsRefused_WhileSameOriginAndOtherClientsWork()
    {
        await using var server = await TestServer.StartAsync();
        await using var bystander = await server.ConnectAsync();
        await bystander.CommandAsync("""{"op":"subscribe","channel":"chat:o"}""");

        var refused = await Assert.ThrowsAsync<WebSocketException>(() => OpenWithOriginAsync(server, "https://evil.example"));
        Assert.Contains("403", refused.Message + refused.InnerException?.Message);

        using var same = await OpenWithOriginAsync(server, $"http://{server.BaseUri.Authority}");
        Assert.Equal(WebSocketState.Open, same.State);

        await server.PublishAsync("chat:o", "1");
        Assert.Equal(1UL, (await bystander.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task ConfiguredOrigins_AreAllowed_AndPollingAnswersCorsOnlyForThem()
    {
        await using var server = await TestServer.StartAsync(o => o.AllowedOrigins.Add("https://app.example"));
        using var allowedSocket = await OpenWithOriginAsync(server, "https://app.example");
        Assert.Equal(WebSocketState.Open, allowedSocket.State);
        await Assert.ThrowsAsync<WebSocketException>(() => OpenWithOriginAsync(server, $"http://{server.BaseUri.Authority}"));

        using var allowed = new HttpRequestMessage(HttpMethod.Get, "/poll?channel=chat:x");
        allowed.Headers.Add("Origin", "https://app.example");
        using var allowedResponse = await server.Http.SendAsync(allowed);
        Assert.Equal(HttpStatusCode.OK, allowedResponse.StatusCode);
        Assert.Equal("https://app.example", allowedResponse.Headers.GetValues("Access-Control-Allow-Origin").Single());

        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/cmd");
        preflight.Headers.Add("Origin", "https://app.example");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        using var preflightResponse = await server.Http.SendAsync(preflight);
        Assert.Equal(HttpStatusCode.NoContent, preflightResponse.StatusCode);
        Assert.Contains("Authorization", preflightResponse.Headers.GetValues("Access-Control-Allow-Headers").Single());

        using var evil = new HttpRequestMessage(HttpMethod.Post, "/cmd") { Content = new StringContent("""{"op":"publish","channel":"chat:x","data":1}""") };
        evil.Headers.Add("Origin", "https://evil.example");
        using var evilResponse = await server.Http.SendAsync(evil);
        Assert.Equal(HttpStatusCode.Forbidden, evilResponse.StatusCode);
        Assert.Contains("forbidden_origin", await evilResponse.Content.ReadAsStringAsync());
        Assert.False(evilResponse.Headers.Contains("Access-Control-Allow-Origin"));
        Assert.Equal(0, server.Node.Metrics.Publications);

        using var noOrigin = await server.Http.GetAsync("/poll?channel=chat:x"); // curl and servers send no Origin
        Assert.Equal(HttpStatusCode.OK, noOrigin.StatusCode);
    }
}
