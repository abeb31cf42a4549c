using System.Text;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn group 2 (pings and pongs).</summary>
public sealed class PingTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    [Theory]
    [InlineData("")]
    [InlineData("hello, herald")]
    [InlineData("κόσμε")]
    public async Task PingWithPayload_IsAnsweredWithIdenticalPong(string text)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var payload = Encoding.UTF8.GetBytes(text);
        await client.SendFrameAsync(Op.Ping, payload);
        var pong = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Pong, pong.Opcode);
        Assert.True(pong.Fin);
        Assert.Equal(payload, pong.Payload);
    }

    [Fact]
    public async Task PingWithBinaryPayload_IsAnsweredWithIdenticalPong()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        byte[] payload = [0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF];
        await client.SendFrameAsync(Op.Ping, payload);
        var pong = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Pong, pong.Opcode);
        Assert.Equal(payload, pong.Payload);
    }

    [Fact]
    public async Task PingWith125BytePayload_IsAnswered()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var payload = Enumerable.Range(0, 125).Select(i => (byte)i).ToArray();
        await client.SendFrameAsync(Op.Ping, payload);
        var pong = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Pong, pong.Opcode);
        Assert.Equal(payload, pong.Payload);
    }

    [Fact]
    public async Task SeveralPings_AreEachAnsweredInOrder()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        for (var i = 0; i < 10; i++)
        {
            await client.SendFrameAsync(Op.Ping, $"ping {i}");
        }
        for (var i = 0; i < 10; i++)
        {
            var pong = await client.ReadNonPingFrameAsync();
            Assert.Equal(Op.Pong, pong.Opcode);
            Assert.Equal($"ping {i}", pong.Text);
        }
    }

    [Theory]
    [InlineData(Op.Ping)]
    [InlineData(Op.Pong)]
    [InlineData(Op.Close)]
    public async Task ControlFrameWith126BytePayload_ClosesWith1002(byte opcode)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var payload = new byte[126];
        if (opcode == Op.Close)
        {
            RawWebSocket.ClosePayload(1000, new string('x', 124)).CopyTo(payload, 0);
        }
        await client.SendFrameAsync(opcode, payload);
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData("")]
    [InlineData("unsolicited")]
    public async Task UnsolicitedPong_IsIgnored(string payload)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Pong, payload);
        await client.SendTextAsync("""{"id":2,"op":"ping"}""");
        var reply = await client.ReadReplyAsync();
        Assert.Equal(2, reply.GetProperty("id").GetInt64());
    }

    [Fact]
    public async Task UnsolicitedPongBeforeConnect_IsIgnored()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendFrameAsync(Op.Pong, new byte[125]);
        await client.SendTextAsync("""{"id":1,"op":"connect"}""");
        Assert.Equal(1, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }
}
