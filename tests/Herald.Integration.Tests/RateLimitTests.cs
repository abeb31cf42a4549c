using System.Net;
using System.Net.WebSockets;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class RateLimitTests
{
    [Fact]
    public async Task PublishFlood_IsRateLimited_WhileOtherClientsKeepReceiving()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxPublishesPerSecond = 5;
            o.MaxCommandsPerSecond = 1000;
        });
        await using var flooder = await server.ConnectAsync();
        await using var bystander = await server.ConnectAsync();
        await bystander.CommandAsync("""{"op":"subscribe","channel":"chat:flood"}""");

        // One frame of 20 publishes: the first 5 pass, the rest are refused, all answered.
        await flooder.SendRawAsync(string.Join('\n', Enumerable.Range(1, 20).Select(i => $$$"""{"id":{{{i}}},"op":"publish","channel":"chat:flood","data":{{{i}}}}""")));
        var codes = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var reply = await flooder.NextReplyAsync();
            codes.Add(reply.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString()! : "ok");
        }
        // 5 per second; a refill landing mid-burst may let 5 more through, never more.
        Assert.InRange(codes.Count(c => c == "ok"), 5, 10);
        Assert.Equal(20, codes.Count(c => c is "ok" or "rate_limited"));
        for (var i = 1; i <= 5; i++)
        {
            Assert.Equal((ulong)i, (await bystander.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
        }
        Assert.True((await flooder.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _)); // other commands still pass
    }

    [Fact]
    public async Task CommandFlood_IsRateLimited()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxCommandsPerSecond = 10);
        await using var client = await WsClient.OpenAsync(server.WebSocketUri);
        await client.SendRawAsync(string.Join('\n', Enumerable.Range(1, 30).Select(i => i == 1 ? """{"id":1,"op":"connect"}""" : $$"""{"id":{{i}},"op":"ping"}""")));
        var limited = 0;
        for (var i = 0; i < 30; i++)
        {
            if ((await client.NextReplyAsync()).TryGetProperty("error", out var error) && error.GetProperty("code").GetString() == "rate_limited")
            {
                limited++;
            }
        }
        Assert.InRange(limited, 10, 20); // 10 per second; at most one refill during the burst
    }

    [Fact]
    public async Task ConnectionsPerIp_AreCapped_With429_AndFreedOnClose()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxConnectionsPerIp = 2);
        var first = await server.ConnectAsync();
        await using var second = await server.ConnectAsync();
        var refused = await Assert.ThrowsAsync<WebSocketException>(() => WsClient.OpenAsync(server.WebSocketUri));
        Assert.Contains("429", refused.Message + refused.InnerException?.Message);
        await first.DisposeAsync();
        await Wait.UntilAsync(() => server.Node.Metrics.WebSocketConnections == 1, TimeSpan.FromSeconds(5), "the first connection closes");
        await using var third = await server.ConnectAsync();
        Assert.True((await second.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
    }

    [Fact]
    public async Task GlobalConnectionCap_Is503()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxConnections = 1);
        await using var only = await server.ConnectAsync();
        var refused = await Assert.ThrowsAsync<WebSocketException>(() => WsClient.OpenAsync(server.WebSocketUri));
        Assert.Contains("503", refused.Message + refused.InnerException?.Message);
    }

    [Fact]
    public async Task PollingRequestsPerIp_AreCapped_With429()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxHttpRequestsPerSecondPerIp = 5);
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 12; i++)
        {
            using var response = await server.Http.GetAsync("/poll?channel=chat:x");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.Contains("rate_limited", await response.Content.ReadAsStringAsync());
                Assert.NotNull(response.Headers.RetryAfter);
            }
        }
        Assert.True(statuses.Count(s => s == HttpStatusCode.OK) <= 10, string.Join(",", statuses)); // 5, plus at most one refill
        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        // The server API (the application's backend) is not limited by this.
        Assert.Equal(1UL, await server.PublishAsync("chat:x", "1"));
    }
}
