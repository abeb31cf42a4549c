using System.Text;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn group 1 (framing) and the parts of group 4 about masking.</summary>
public sealed class FramingTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    [Fact]
    public async Task TextMessageInOneFrame_RoundTrips()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendTextAsync("""{"id":1,"op":"connect"}""");
        var connected = await client.ReadReplyAsync();
        Assert.Equal(1, connected.GetProperty("id").GetInt64());
        Assert.True(connected.TryGetProperty("result", out _), connected.ToString());

        await client.SendTextAsync("""{"id":2,"op":"ping"}""");
        var pong = await client.ReadReplyAsync();
        Assert.Equal(2, pong.GetProperty("id").GetInt64());
        Assert.True(pong.TryGetProperty("result", out _), pong.ToString());
    }

    [Fact]
    public async Task ServerFrames_AreUnmaskedTextWithoutReservedBits()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendTextAsync("""{"id":1,"op":"connect"}""");
        var frame = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Text, frame.Opcode);
        Assert.True(frame.Fin);
        Assert.Equal(0, frame.Rsv);
        Assert.False(frame.Masked);
    }

    [Fact]
    public async Task SeveralCommandsInOneFrame_AreAnsweredInOrder()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendTextAsync("{\"id\":1,\"op\":\"connect\"}\n{\"id\":2,\"op\":\"ping\"}\r\n\n{\"id\":3,\"op\":\"ping\"}\n{\"id\":4,\"op\":\"ping\"}\n");
        for (var id = 1; id <= 4; id++)
        {
            var reply = await client.ReadReplyAsync();
            Assert.Equal(id, reply.GetProperty("id").GetInt64());
            Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
        }
    }

    [Theory]
    [InlineData(200)] // 16-bit length
    [InlineData(1000)]
    public async Task TextMessageWithExtendedLength_RoundTrips(int size)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendTextAsync(Padded("""{"id":2,"op":"ping" """, "}", size));
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }

    [Fact]
    public async Task EmptyTextMessage_IsIgnored()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendTextAsync("");
        await client.SendTextAsync("""{"id":2,"op":"ping"}""");
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }

    [Theory]
    [InlineData(Op.Text)]
    [InlineData(Op.Ping)]
    [InlineData(Op.Close)]
    public async Task UnmaskedClientFrame_ClosesWith1002(byte opcode)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var payload = opcode == Op.Close ? RawWebSocket.ClosePayload(1000) : Encoding.UTF8.GetBytes("""{"id":2,"op":"ping"}""");
        await client.SendFrameAsync(opcode, payload, mask: false);
        await client.ExpectCloseAsync(1002);
    }

    [Fact]
    public async Task UnmaskedFrameBeforeConnect_ClosesWith1002()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendFrameAsync(Op.Text, """{"id":1,"op":"connect"}""", mask: false);
        await client.ExpectCloseAsync(1002);
    }

    [Fact]
    public async Task PingAndUnmaskedFrameInOneSegment_PongArrivesBeforeClose1002()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendRawAsync([
            .. RawWebSocket.BuildFrame(Op.Ping, "first"u8),
            .. RawWebSocket.BuildFrame(Op.Text, """{"id":2,"op":"ping"}"""u8, mask: false),
        ]);
        var pong = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Pong, pong.Opcode);
        Assert.Equal("first", pong.Text);
        await client.ExpectCloseAsync(1002);
    }

    /// <summary>Pads a JSON command with whitespace to exactly <paramref name="size"/> bytes.</summary>
    internal static string Padded(string head, string tail, int size) =>
        head + new string(' ', size - Encoding.UTF8.GetByteCount(head) - Encoding.UTF8.GetByteCount(tail)) + tail;
}
