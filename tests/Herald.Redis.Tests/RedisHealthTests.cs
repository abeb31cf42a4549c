using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Herald.Redis.Tests;

/// <summary>
/// <c>/healthz</c> on a node on Redis: 200 while Redis answers PING, 503 with a reason within a bounded time once it
/// cannot be reached, 200 again when it is back. Each test has a redis-server of its own, killed by its PID.
/// </summary>
// In the redis collection although it has a server of its own: run alone, its load does not disturb the
// real-time TTL tests of the others.
[Collection(RedisCollection.Name)]
public sealed class RedisHealthTests(ITestOutputHelper output)
{
    /// <summary>The longest one /healthz request may take: the check's own PING timeout (2 s) and some slack.</summary>
    private static readonly TimeSpan RequestBound = TimeSpan.FromSeconds(4);

    private static Task<TestServer> StartNodeAsync(int port) =>
        TestServer.StartAsync(configureServices: services => services.AddHeraldRedis(o =>
        {
            o.Configuration = $"127.0.0.1:{port},abortConnect=false,connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000";
            o.Prefix = "health-" + Guid.NewGuid().ToString("N")[..12];
        }));

    private static async Task<(HttpStatusCode Status, JsonElement Body)> HealthAsync(TestServer node)
    {
        var clock = Stopwatch.StartNew();
        using var response = await node.Http.GetAsync("/healthz");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(clock.Elapsed < RequestBound, $"/healthz took {clock.Elapsed.TotalSeconds:0.0} s (bound {RequestBound.TotalSeconds} s): {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var doc = JsonDocument.Parse(text);
        return (response.StatusCode, doc.RootElement.Clone());
    }

    /// <summary>Asks /healthz until it answers <paramref name="status"/>, failing after <paramref name="timeout"/>.</summary>
    private static async Task<JsonElement> HealthUntilAsync(TestServer node, HttpStatusCode status, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var (answered, body) = await HealthAsync(node);
            if (answered == status)
            {
                return body;
            }
            if (deadline.Elapsed > timeout)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds} s waiting for {what}: /healthz still answers {(int)answered} {body}");
            }
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task Healthz_WhileRedisIsUp_Is200Ok_WhenItIsKilled_Is503WithAReason_AndWhenItIsBack_Is200Again()
    {
        using var redis = new RedisServer(persistent: false);
        await redis.StartAsync();
        await using var node = await StartNodeAsync(redis.Port);

        var healthy = await HealthUntilAsync(node, HttpStatusCode.OK, TimeSpan.FromSeconds(10), "a healthy node");
        Assert.Equal("ok", healthy.GetProperty("status").GetString());
        Assert.Equal("ok", healthy.GetProperty("checks").GetProperty("redis").GetProperty("status").GetString());

        redis.Stop();
        var down = await HealthUntilAsync(node, HttpStatusCode.ServiceUnavailable, TimeSpan.FromSeconds(10), "503 once Redis is killed");
        Assert.Equal("unhealthy", down.GetProperty("status").GetString());
        output.WriteLine($"Redis killed: {down}");
        var check = down.GetProperty("checks").GetProperty("redis");
        Assert.Equal("unhealthy", check.GetProperty("status").GetString());
        Assert.Contains("Redis", check.GetProperty("reason").GetString(), StringComparison.Ordinal);
        // While it is down the answer stays 503, and stays quick.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await HealthAsync(node)).Status);

        await redis.StartAsync();
        var back = await HealthUntilAsync(node, HttpStatusCode.OK, TimeSpan.FromSeconds(20), "200 once Redis is back");
        Assert.Equal("ok", back.GetProperty("checks").GetProperty("redis").GetProperty("status").GetString());
        // And the node serves again: a publish through it is accepted (a new epoch: that Redis kept nothing).
        Assert.Equal(1UL, await node.PublishAsync("chat:health", """{"n":1}"""));
    }

    [Fact]
    public async Task Healthz_OnANodeWhoseRedisPortIsClosed_Is503()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        await using var node = await StartNodeAsync(port);

        var (status, body) = await HealthAsync(node);
        output.WriteLine($"closed port: {(int)status} {body}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("unhealthy", body.GetProperty("status").GetString());
        Assert.Equal("unhealthy", body.GetProperty("checks").GetProperty("redis").GetProperty("status").GetString());
    }
}
