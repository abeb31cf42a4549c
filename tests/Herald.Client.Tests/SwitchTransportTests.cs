using System.Text.Json;
using Herald.Client.Tests.Infrastructure;

namespace Herald.Client.Tests;

/// <summary>The contract of <see cref="HeraldClient.SwitchTransportAsync"/>: one attempt, then a result or an exception, never a hang.</summary>
public sealed class SwitchTransportTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    // Regression (issue 4): a switch whose attempt failed waited forever for a transport the client had fallen back from.
    [Fact]
    public async Task SwitchAttemptFails_ThrowsHeraldTransportSwitchException_FallsBack_AndTheSubscriptionMissesNothing()
    {
        await using var server = await TestServer.StartAsync();
        const string Channel = "chat:switch-fails";
        const int Total = 600;
        // The WebSocket endpoint 404s, so every attempt on it fails; long poll is first, so the client starts there.
        await using var client = new HeraldClient(Clients.Options(server) with
        {
            WebSocketPath = "no-websocket-here",
            Transports = [HeraldTransport.LongPoll, HeraldTransport.WebSocket, HeraldTransport.ShortPoll],
        });
        var states = new StateLog(client);
        await client.ConnectAsync();
        Assert.Equal(HeraldTransport.LongPoll, client.Transport);
        var collector = new Collector(await client.SubscribeAsync(Channel));

        var publisher = Task.Run(async () =>
        {
            for (var i = 1; i <= Total; i++)
            {
                await server.PublishAsync(Channel, $$"""{"i":{{i}}}""");
            }
        });
        await Wait.UntilAsync(() => collector.Count >= Total / 3 || publisher.IsCompleted, Timeout, "publications before the switch");

        // Bounded by the test, not by the client: before the fix this never completed.
        var error = await Wait.ForAsync(
            Assert.ThrowsAsync<HeraldTransportSwitchException>(async () => await client.SwitchTransportAsync(HeraldTransport.WebSocket)),
            Timeout,
            "SwitchTransportAsync to settle");
        Assert.Equal(HeraldTransport.WebSocket, error.RequestedTransport);
        Assert.NotNull(error.InnerException);
        Assert.IsAssignableFrom<HeraldConnectionException>(error);

        // The client falls back in its configured order without the transport that failed: long poll again.
        await Wait.UntilAsync(() => client.Transport == HeraldTransport.LongPoll, Timeout, $"the fallback to long poll ({states})");
        await publisher.WaitAsync(Timeout);
        await collector.WaitForAsync(Total, Timeout);
        Assert.Equal(Enumerable.Range(1, Total).Select(i => (ulong)i), collector.Offsets);
        Assert.Equal(Enumerable.Range(1, Total), collector.Received.Select(p => p.Data.GetProperty("i").GetInt32()));
        Assert.Contains(states.Events, e => e.State == HeraldConnectionState.Connecting && e.Transport == HeraldTransport.WebSocket);
        Assert.DoesNotContain(states.Events, e => e.State == HeraldConnectionState.Connected && e.Transport == HeraldTransport.WebSocket);
    }

    [Fact]
    public async Task SwitchAttemptSucceeds_ReturnsConnectedOverTheRequestedTransport()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server));
        var states = new StateLog(client);
        await client.ConnectAsync();
        Assert.Equal(HeraldTransport.WebSocket, client.Transport);

        await client.SwitchTransportAsync(HeraldTransport.ShortPoll).AsTask().WaitAsync(Timeout);
        Assert.Equal(HeraldTransport.ShortPoll, client.Transport);
        Assert.Equal(2, Connects(states));

        // Asking for the transport in use reconnects over it, and returns once the new connection is up (it used to
        // return at once, with the old connection still closing).
        await client.SwitchTransportAsync(HeraldTransport.ShortPoll).AsTask().WaitAsync(Timeout);
        Assert.Equal(HeraldTransport.ShortPoll, client.Transport);
        Assert.Equal(3, Connects(states));

        static int Connects(StateLog log) => log.Events.Count(e => e.State == HeraldConnectionState.Connected);
    }

    [Fact]
    public async Task SwitchesInQuickSuccession_EachSettles_AndTheLastOneWins()
    {
        await using var server = await TestServer.StartAsync();
        const string Channel = "chat:switch-burst";
        await using var client = new HeraldClient(Clients.Options(server));
        await client.ConnectAsync();
        var collector = new Collector(await client.SubscribeAsync(Channel));
        await server.PublishAsync(Channel, "1");

        // Without awaiting in between: each call supersedes the previous one unless that one already connected.
        HeraldTransport[] plan = [HeraldTransport.LongPoll, HeraldTransport.Sse, HeraldTransport.ShortPoll, HeraldTransport.WebSocket, HeraldTransport.Sse, HeraldTransport.LongPoll];
        var switches = plan.Select(kind => client.SwitchTransportAsync(kind).AsTask()).ToList();
        for (var i = 0; i < switches.Count - 1; i++)
        {
            try
            {
                await switches[i].WaitAsync(Timeout);
            }
            catch (HeraldTransportSwitchException ex)
            {
                Assert.Equal(plan[i], ex.RequestedTransport);
            }
        }
        await switches[^1].WaitAsync(Timeout);
        Assert.Equal(HeraldTransport.LongPoll, client.Transport);

        await server.PublishAsync(Channel, "2");
        await collector.WaitForAsync(2, Timeout);
        Assert.Equal([1UL, 2UL], collector.Offsets);
    }

    [Fact]
    public async Task SwitchBeforeConnect_OrToAnotherThanTheForcedTransport_Throws()
    {
        await using var server = await TestServer.StartAsync();
        await using var idle = new HeraldClient(Clients.Options(server));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await idle.SwitchTransportAsync(HeraldTransport.LongPoll));

        await using var forced = new HeraldClient(Clients.Options(server, HeraldTransport.ShortPoll));
        await forced.ConnectAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await forced.SwitchTransportAsync(HeraldTransport.WebSocket));
    }

    [Fact]
    public async Task SwitchWithCancelledToken_ThrowsOperationCanceled_AndLeavesTheConnectionAlone()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server));
        await client.ConnectAsync();
        Assert.Equal(HeraldTransport.WebSocket, client.Transport);
        var states = new StateLog(client);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await client.SwitchTransportAsync(HeraldTransport.LongPoll, cancelled.Token));

        // A round trip over the connection after the call: had the switch been queued, the WebSocket would be gone.
        await client.PublishAsync("chat:switch-cancelled", JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32));
        Assert.Equal(HeraldConnectionState.Connected, client.State);
        Assert.Equal(HeraldTransport.WebSocket, client.Transport);
        Assert.Empty(states.Events);
    }

    [Fact]
    public async Task SwitchWaitCancelledWhilePending_ThrowsOrLands_AndTheClientGoesOn()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server));
        await client.ConnectAsync();
        using var cancel = new CancellationTokenSource();
        var switching = client.SwitchTransportAsync(HeraldTransport.LongPoll, cancel.Token).AsTask();
        await cancel.CancelAsync();
        try
        {
            await switching.WaitAsync(Timeout);
        }
        catch (OperationCanceledException)
        {
            // Withdrawn before the loop took it (or cancelled while it was under way): both are allowed.
        }

        // Whichever won, the client goes on; it never hangs or stops.
        await Wait.UntilAsync(() => client.State == HeraldConnectionState.Connected, Timeout, "a connection after the cancelled switch");
    }
}
