using Herald.Client.Tests.Infrastructure;

namespace Herald.Client.Tests;

/// <summary>
/// A subscribe the server refuses with "not now" (<c>rate_limited</c>) keeps the subscription and asks again; only a
/// "no" (<c>permission_denied</c>, <c>invalid_channel</c>, …) ends it.
/// </summary>
public sealed class SubscribeRetryTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private const int Channels = 8;

    // Regression: a client whose subscriptions outnumbered the command rate's burst lost the rest for good, both
    // when subscribing and when resubscribing after every reconnect.
    [Fact]
    public async Task SubscribesPastTheCommandRate_AreRetried_AndResumeAfterAReconnect_WithNothingLostOrRepeated()
    {
        // A burst of 3 commands: `connect` and two subscribes; every other subscribe is refused with rate_limited.
        await using var server = await TestServer.StartAsync(o => o.MaxCommandsPerSecond = 3);
        await using var client = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket));
        await client.ConnectAsync();

        var subscriptions = await Task.WhenAll(Enumerable.Range(1, Channels).Select(i => client.SubscribeAsync($"chat:rate-{i}").AsTask()));
        var collectors = subscriptions.Select(s => new Collector(s)).ToArray();
        for (var i = 1; i <= Channels; i++)
        {
            await server.PublishAsync($"chat:rate-{i}", "1");
        }
        foreach (var collector in collectors)
        {
            await collector.WaitForAsync(1, Timeout);
        }

        // The reconnect sends `connect` and all eight subscribes at once, past the burst again.
        Assert.Equal(HeraldTransport.WebSocket, client.BreakConnection());
        for (var i = 1; i <= Channels; i++)
        {
            await server.PublishAsync($"chat:rate-{i}", "2");
            await server.PublishAsync($"chat:rate-{i}", "3");
        }
        foreach (var collector in collectors)
        {
            await collector.WaitForAsync(3, Timeout);
            collector.AssertInOrder();
            Assert.Equal([1UL, 2UL, 3UL], collector.Offsets);
        }
        Assert.All(subscriptions, s => Assert.False(s.Completion.IsCompleted));
    }

    [Fact]
    public async Task ARefusal_StillEndsTheSubscription()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket));
        await client.ConnectAsync();
        // "nope:" is not a configured namespace.
        var error = await Assert.ThrowsAsync<HeraldException>(async () => await client.SubscribeAsync("nope:x"));
        Assert.Equal(Protocol.ErrorCodes.InvalidChannel, error.Code);
    }
}
