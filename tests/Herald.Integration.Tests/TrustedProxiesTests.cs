using System.Net;
using System.Net.WebSockets;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// <c>Herald:TrustedProxies</c>: the per-IP limits count the address a trusted proxy forwards, and ignore the header
/// from anyone else. The cap of one WebSocket per IP makes each case a yes or no (no rate-limit timing).
/// </summary>
public sealed class TrustedProxiesTests
{
    // Documentation addresses (RFC 5737): they only ever appear inside a header here.
    private const string Alice = "203.0.113.1";
    private const string Bob = "203.0.113.2";

    [Fact]
    public async Task FromATrustedProxy_EachForwardedClientHasItsOwnConnectionCap()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxConnectionsPerIp = 1;
            o.TrustedProxies.Add("127.0.0.0/8");
        });
        using var alice = await OpenAsync(server, Alice);
        Assert.Equal(HttpStatusCode.TooManyRequests, await RefusedAsync(server, Alice));
        using var bob = await OpenAsync(server, $"{Alice}, {Bob}"); // the right-most address not a trusted proxy counts
        Assert.Equal(WebSocketState.Open, alice.State);
        Assert.Equal(WebSocketState.Open, bob.State);
    }

    [Fact]
    public async Task WithoutTrustedProxies_ForwardedForIsIgnored_AndEveryoneIsTheTcpPeer()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxConnectionsPerIp = 1);
        using var alice = await OpenAsync(server, Alice);
        Assert.Equal(HttpStatusCode.TooManyRequests, await RefusedAsync(server, Bob));
    }

    [Fact]
    public async Task FromAnUntrustedPeer_ForwardedForIsIgnored()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxConnectionsPerIp = 1;
            o.TrustedProxies.Add("192.0.2.10"); // some other proxy, not the loopback peer
        });
        using var alice = await OpenAsync(server, Alice);
        Assert.Equal(HttpStatusCode.TooManyRequests, await RefusedAsync(server, Bob));
    }

    [Fact]
    public async Task ABadEntry_StopsStartUp_NamingTheKey()
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(() => TestServer.StartAsync(o => o.TrustedProxies.Add("10.0.0.0/33")));
        Assert.Contains("Herald:TrustedProxies: '10.0.0.0/33'", error.Message, StringComparison.Ordinal);
    }

    private static async Task<ClientWebSocket> OpenAsync(TestServer server, string forwardedFor)
    {
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol("herald.json");
        socket.Options.SetRequestHeader("X-Forwarded-For", forwardedFor);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(server.WebSocketUri, timeout.Token);
        return socket;
    }

    private static async Task<HttpStatusCode> RefusedAsync(TestServer server, string forwardedFor)
    {
        using var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol("herald.json");
        socket.Options.SetRequestHeader("X-Forwarded-For", forwardedFor);
        socket.Options.CollectHttpResponseDetails = true;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(server.WebSocketUri, timeout.Token));
        return socket.HttpStatusCode;
    }
}
