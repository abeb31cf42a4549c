using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>
/// The server's keep-alive on the wire (<c>Herald:KeepAliveInterval</c>, <c>Herald:KeepAliveTimeout</c>): empty pings
/// from the node's one keep-alive timer, any frame from the peer as the answer, and a silent peer dropped without a
/// close frame.
/// </summary>
public sealed class KeepAliveTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static Task<TestServer> StartAsync(TimeSpan interval, TimeSpan timeout) => TestServer.StartAsync(o =>
    {
        o.KeepAliveInterval = interval;
        o.KeepAliveTimeout = timeout;
    });

    [Fact]
    public async Task IdlePeer_GetsEmptyUnmaskedPings_AndStaysWhileItAnswersThem()
    {
        await using var server = await StartAsync(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(300));
        await using var client = await RawWebSocket.OpenConnectedAsync(server.Port);

        // Ten pings span 1 s, more than three timeouts: each answered one keeps the connection.
        for (var i = 0; i < 10; i++)
        {
            var ping = await client.ReadFrameAsync(Timeout);
            Assert.Equal(Op.Ping, ping.Opcode);
            Assert.True(ping.Fin);
            Assert.False(ping.Masked);
            Assert.Empty(ping.Payload);
            await client.SendFrameAsync(Op.Pong, ping.Payload);
        }
        await client.SendTextAsync("""{"id":2,"op":"ping"}""");
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
        Assert.Equal(1, server.Node.Metrics.WebSocketConnections);
    }

    [Fact]
    public async Task PeerThatAnswersPingsWithMessages_NotPongs_StaysConnected()
    {
        await using var server = await StartAsync(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(300));
        await using var client = await RawWebSocket.OpenConnectedAsync(server.Port);

        // Any frame from the peer proves it alive: here a command after each ping, never a pong.
        for (var i = 0; i < 10; i++)
        {
            var ping = await client.ReadFrameAsync(Timeout);
            Assert.Equal(Op.Ping, ping.Opcode);
            await client.SendTextAsync($$"""{"id":{{10 + i}},"op":"ping"}""");
            Assert.Equal(10 + i, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
        }
        Assert.Equal(1, server.Node.Metrics.WebSocketConnections);
    }

    [Fact]
    public async Task PeerThatStopsAnswering_IsDroppedWithoutACloseFrame_AfterOnePingWhenTheTimeoutIsLongerThanTheInterval()
    {
        await using var server = await StartAsync(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(450));
        await using var client = await RawWebSocket.OpenConnectedAsync(server.Port);
        for (var i = 0; i < 3; i++)
        {
            var ping = await client.ReadFrameAsync(Timeout);
            Assert.Equal(Op.Ping, ping.Opcode);
            await client.SendFrameAsync(Op.Pong, ping.Payload);
        }

        // Silent from here: one ping, and no second one while it is unanswered (the timeout is longer than the
        // interval); then the connection goes, with no close frame (a dead peer could not answer one).
        Assert.Equal(Op.Ping, (await client.ReadFrameAsync(Timeout)).Opcode);
        var after = new List<byte>();
        Assert.True(await client.WaitForServerToCloseTcpAsync(Timeout, after), "the server drops the silent peer");
        Assert.Empty(after);
        await Wait.UntilAsync(() => server.Node.Metrics.WebSocketConnections == 0, Timeout, "the connection is gone");
    }

    [Fact]
    public async Task TimeoutZero_GoesOnPingingASilentPeer_AndNeverDropsIt()
    {
        await using var server = await StartAsync(TimeSpan.FromMilliseconds(50), TimeSpan.Zero);
        await using var client = await RawWebSocket.OpenConnectedAsync(server.Port);

        // Never answered, the pings still come (they keep proxies' idle timers from firing), and nobody is dropped.
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(Op.Ping, (await client.ReadFrameAsync(Timeout)).Opcode);
        }
        await client.SendTextAsync("""{"id":4,"op":"ping"}""");
        Assert.Equal(4, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
        Assert.Equal(1, server.Node.Metrics.WebSocketConnections);
    }

    [Fact]
    public async Task KeepAliveOff_SendsNoPings()
    {
        await using var server = await StartAsync(TimeSpan.Zero, TimeSpan.FromMilliseconds(100));
        await using var client = await RawWebSocket.OpenConnectedAsync(server.Port);

        // With keep-alive off nothing arrives unasked: the next frame is the reply to a command sent after a pause
        // longer than any interval the test above uses, and the silent peer is not dropped.
        var paused = Task.Delay(TimeSpan.FromMilliseconds(500));
        await paused;
        await client.SendTextAsync("""{"id":3,"op":"ping"}""");
        var frame = await client.ReadFrameAsync(Timeout);
        Assert.Equal(Op.Text, frame.Opcode);
        Assert.Contains("\"id\":3", frame.Text, StringComparison.Ordinal);
        Assert.Equal(1, server.Node.Metrics.WebSocketConnections);
    }
}
