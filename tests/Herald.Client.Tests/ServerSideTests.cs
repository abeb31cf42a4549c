using System.Collections.Concurrent;
using System.Text.Json;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Client.Tests;

/// <summary>
/// What the .NET client does with the server's user commands: a server-side subscription surfaces as a
/// <see cref="HeraldSubscription"/> that recovers like the client's own, an unsubscribe ends it, and a disconnect's code
/// says whether the client reconnects. Two nodes on one memory store; the command is given to the node the client is
/// not on.
/// </summary>
public sealed class ServerSideTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);
    private TestCluster _cluster = null!;

    private TestServer A => _cluster[0];

    private TestServer B => _cluster[1];

    private IHeraldServer ServerOnA => A.Services.GetRequiredService<IHeraldServer>();

    public async Task InitializeAsync() => _cluster = await TestServer.StartClusterAsync(2, configureServices: UserAuthenticator.Use);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    private HeraldClient AliceOnB() => new(Clients.Options(B, HeraldTransport.WebSocket) with { Token = UserAuthenticator.TokenFor("alice") });

    private static async Task<HeraldSubscription> NextServerSubscriptionAsync(BlockingCollection<HeraldSubscription> surfaced) =>
        await Task.Run(() => surfaced.TryTake(out var s, Timeout) ? s : throw new TimeoutException("no ServerSubscribed event"));

    [Fact]
    public async Task ServerSubscribe_WithSince_SurfacesTheSubscription_AndAfterADropRecoversEveryOffsetOnce()
    {
        const string Channel = "chat:client-server-sub";
        await using var client = AliceOnB();
        using var surfaced = new BlockingCollection<HeraldSubscription>();
        client.ServerSubscribed += (_, e) => surfaced.Add(e.Subscription);
        await client.ConnectAsync();
        for (var i = 1; i <= 3; i++)
        {
            await A.PublishAsync(Channel, $$"""{"n":{{i}}}""");
        }
        var head = (await ServerOnA.ReadHistoryAsync(Channel, new HistoryQuery { Limit = 1 })).Value.Head;

        Assert.Null(await ServerOnA.SubscribeAsync("alice", Channel, new StreamPosition(1, head.Epoch)));
        var subscription = await NextServerSubscriptionAsync(surfaced);
        Assert.True(subscription.IsServerSide);
        Assert.Equal(Channel, subscription.Channel);
        var collector = new Collector(subscription, after: 1);
        await collector.WaitForAsync(2, Timeout);

        // Publications go on while the connection drops; the client resubscribes from its cursor on its own.
        var publishing = Task.Run(async () =>
        {
            for (var i = 4; i <= 40; i++)
            {
                await A.PublishAsync(Channel, $$"""{"n":{{i}}}""");
                if (i == 10)
                {
                    Assert.Equal(HeraldTransport.WebSocket, client.BreakConnection());
                }
            }
        });
        await publishing;
        await collector.WaitForAsync(39, Timeout);
        Assert.Equal(Enumerable.Range(2, 39).Select(i => (ulong)i), collector.Offsets);
        Assert.Equal(new StreamPosition(40, head.Epoch), subscription.Position);
    }

    [Fact]
    public async Task ServerUnsubscribe_EndsTheSubscription_AndRaisesServerUnsubscribed()
    {
        const string Channel = "chat:client-server-unsub";
        await using var client = AliceOnB();
        using var surfaced = new BlockingCollection<HeraldSubscription>();
        var ended = new TaskCompletionSource<HeraldServerSubscriptionEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.ServerSubscribed += (_, e) => surfaced.Add(e.Subscription);
        client.ServerUnsubscribed += (_, e) => ended.TrySetResult(e);
        await client.ConnectAsync();

        Assert.Null(await ServerOnA.SubscribeAsync("alice", Channel));
        var subscription = await NextServerSubscriptionAsync(surfaced);
        var collector = new Collector(subscription);
        await Wait.UntilAsync(() => subscription.Position is not null, Timeout, "the subscription's position");
        await A.PublishAsync(Channel, """{"n":1}""");
        await collector.WaitForAsync(1, Timeout);

        Assert.Null(await ServerOnA.UnsubscribeAsync("alice", Channel));
        var e = await ended.Task.WaitAsync(Timeout);
        Assert.Same(subscription, e.Subscription);
        Assert.Equal("unsubscribed by the server", e.Reason);
        await subscription.Completion.WaitAsync(Timeout);
        Assert.False(client.TryGetSubscription(Channel, out _));
    }

    [Fact]
    public async Task Disconnect_WithAReconnectCode_TheClientReconnects()
    {
        await using var client = AliceOnB();
        var states = new StateLog(client);
        await client.ConnectAsync();

        Assert.Null(await ServerOnA.DisconnectAsync("alice", 4321, "come back"));
        await Wait.UntilAsync(() => states.Events.Count(e => e.State == HeraldConnectionState.Connected) >= 2, Timeout, $"a reconnect ({states})");
        Assert.Contains(states.Events, e => e.State == HeraldConnectionState.Disconnected && e.Reason == "closed 4321: come back");
        await client.PublishAsync("chat:after", JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32));
    }

    [Fact]
    public async Task Disconnect_WithANoReconnectCode_TheClientStops()
    {
        await using var client = AliceOnB();
        var states = new StateLog(client);
        await client.ConnectAsync();

        Assert.Null(await ServerOnA.DisconnectAsync("alice", CloseCodes.ServerDisconnectNoReconnect, "logged out"));
        await Wait.UntilAsync(() => states.Events[^1] is { State: HeraldConnectionState.Disconnected, Reason: "closed 4500: logged out" }, Timeout, $"the client to stop ({states})");
        var stopped = await Assert.ThrowsAsync<HeraldConnectionException>(async () =>
            await client.PublishAsync("chat:after-stop", JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32)).AsTask().WaitAsync(Timeout));
        Assert.Contains("stopped reconnecting", stopped.Message, StringComparison.Ordinal);
        Assert.Equal(HeraldConnectionState.Disconnected, client.State);
        Assert.Equal(1, states.Events.Count(e => e.State == HeraldConnectionState.Connected));
        // The server ends its session once the close handshake is done, which may be just after the client saw the close.
        await Wait.UntilAsync(() => B.Node.ConnectionsOf("alice") == 0, Timeout, "alice's session on B to end");
    }
}
