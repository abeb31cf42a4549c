using System.Text.Json;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;

namespace Herald.Client.Tests;

/// <summary>
/// A refusal no retry can cure stops the client with that error, on every transport, instead of reconnecting forever.
/// The case at hand: an <see cref="HeraldClientOptions.Info"/> over the server's <c>Herald:MaxClientInfoBytes</c>.
/// </summary>
public sealed class FatalRefusalTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    // Regression (issue 4): the WebSocket's `connect` was refused, the client fell back to polling, every poll was
    // refused in turn, and it went round the transports for as long as it ran.
    [Fact]
    public async Task OversizedInfo_OverWebSocket_ConnectAsyncFailsWithPayloadTooLarge_WithoutFallingBack()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server) with { Info = OversizedInfo() });
        var states = new StateLog(client);

        var error = await Assert.ThrowsAsync<HeraldException>(async () => await client.ConnectAsync().AsTask().WaitAsync(Timeout));

        Assert.Equal(ErrorCodes.PayloadTooLarge, error.Code);
        Assert.Contains("MaxClientInfoBytes", error.Message, StringComparison.Ordinal);
        // One attempt, on the first transport of the order, and no other.
        Assert.Equal([HeraldTransport.WebSocket], states.Events.Where(e => e.State == HeraldConnectionState.Connecting).Select(e => e.Transport));
        var last = states.Events[^1];
        Assert.Equal(HeraldConnectionState.Disconnected, last.State);
        Assert.Same(error, last.Exception);
        await AssertStoppedAsync(client);
    }

    [Theory]
    [InlineData(HeraldTransport.LongPoll)]
    [InlineData(HeraldTransport.ShortPoll)]
    public async Task OversizedInfo_OverPolling_SubscribeAsyncFailsWithPayloadTooLarge_AndTheClientStops(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, transport) with { Info = OversizedInfo() });
        var states = new StateLog(client);
        // Opening a polling transport is a ping, which carries no info: the first poll is where the server says no.
        await client.ConnectAsync();

        var error = await Assert.ThrowsAsync<HeraldException>(async () => await client.SubscribeAsync("chat:too-much-info").AsTask().WaitAsync(Timeout));

        Assert.Equal(ErrorCodes.PayloadTooLarge, error.Code);
        Assert.Contains("MaxClientInfoBytes", error.Message, StringComparison.Ordinal);
        Assert.Single(states.Events, e => e.State == HeraldConnectionState.Connecting);
        Assert.Equal(HeraldConnectionState.Disconnected, states.Events[^1].State);
        Assert.Same(error, states.Events[^1].Exception);
        await AssertStoppedAsync(client);
    }

    [Fact]
    public async Task InfoAtTheLimit_IsAccepted()
    {
        await using var server = await TestServer.StartAsync();
        // {"n":"xxx…"} of exactly 1,024 bytes, the default limit.
        var info = Clients.Json($$"""{"n":"{{new string('x', 1024 - 8)}}"}""");
        Assert.Equal(1024, info.GetRawText().Length);
        await using var client = new HeraldClient(Clients.Options(server) with { Info = info });
        await client.ConnectAsync();
        await client.SubscribeAsync("chat:info-at-limit");
        var present = await client.PresenceAsync("chat:info-at-limit");
        Assert.Equal(info.GetRawText(), Assert.Single(present).Value.Info!.Value.GetRawText());
    }

    /// <summary>The loop has ended: commands fail at once instead of waiting for a connection that will not come.</summary>
    private static async Task AssertStoppedAsync(HeraldClient client)
    {
        var stopped = await Assert.ThrowsAsync<HeraldConnectionException>(async () =>
            await client.PublishAsync("chat:after-stop", JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32)).AsTask().WaitAsync(Timeout));
        Assert.Contains("stopped reconnecting", stopped.Message, StringComparison.Ordinal);
        Assert.Equal(HeraldConnectionState.Disconnected, client.State);
    }

    // 1,025 bytes of JSON text: one over the default Herald:MaxClientInfoBytes.
    private static JsonElement OversizedInfo()
    {
        var info = Clients.Json($$"""{"n":"{{new string('x', 1025 - 8)}}"}""");
        Assert.Equal(1025, info.GetRawText().Length);
        return info;
    }
}
