using System.Text;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn group 7 (close handling).</summary>
public sealed class CloseTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    [Fact]
    public async Task ClientClose1000_IsAnsweredWithClose()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(1000, "bye"));
        var frame = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Close, frame.Opcode);
        Assert.True(frame.Fin);
        Assert.Equal(1000, frame.Payload[0] << 8 | frame.Payload[1]);
        Assert.True(await client.WaitForServerToCloseTcpAsync(RawWebSocket.DefaultTimeout), "the server did not close TCP after the close handshake");
    }

    [Fact]
    public async Task ClientCloseBeforeConnect_IsAnsweredWithClose()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(1000));
        await client.ExpectCloseAsync(1000);
    }

    [Fact]
    public async Task ClientCloseWithoutPayload_IsAnsweredWithClose()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, []);
        var frame = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Close, frame.Opcode);
        Assert.True(frame.Payload.Length is 0 or >= 2, "a close payload is empty or starts with a 2-byte code");
        Assert.True(await client.WaitForServerToCloseTcpAsync(RawWebSocket.DefaultTimeout), "the server did not close TCP after the close handshake");
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(1001)]
    [InlineData(1002)]
    [InlineData(1003)]
    [InlineData(1007)]
    [InlineData(1008)]
    [InlineData(1009)]
    [InlineData(1010)]
    [InlineData(1011)]
    [InlineData(3000)]
    [InlineData(3999)]
    [InlineData(4000)]
    [InlineData(4999)]
    public async Task ClientCloseWithValidCode_IsAnsweredWithClose(int code)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(code, "client says bye"));
        var frame = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Close, frame.Opcode);
        Assert.True(frame.Payload.Length >= 2);
        Assert.NotEqual(1002, frame.Payload[0] << 8 | frame.Payload[1]);
        Assert.True(await client.WaitForServerToCloseTcpAsync(RawWebSocket.DefaultTimeout), "the server did not close TCP after the close handshake");
    }

    [Fact]
    public async Task ClientCloseWith123ByteReason_IsAnsweredWithClose()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(1000, new string('r', 123)));
        var frame = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Close, frame.Opcode);
        Assert.Equal(1000, frame.Payload[0] << 8 | frame.Payload[1]);
    }

    [Fact]
    public async Task ClientCloseWithValidUtf8Reason_IsAnsweredWithClose()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(1000, "κόσμε 😀"));
        await client.ExpectCloseAsync(1000);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(999)]
    [InlineData(1004)]
    [InlineData(1005)]
    [InlineData(1006)]
    [InlineData(1015)]
    [InlineData(1016)]
    [InlineData(1100)]
    [InlineData(2000)]
    [InlineData(2999)]
    [InlineData(5000)]
    [InlineData(65535)]
    public async Task CloseWithInvalidCode_ClosesWith1002(int code)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(code));
        await client.ExpectCloseAsync(1002);
    }

    [Fact]
    public async Task CloseWith1BytePayload_ClosesWith1002()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, [0x03]);
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData(new byte[] { 0xFF })]
    [InlineData(new byte[] { 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64 })]
    [InlineData(new byte[] { 0x61, 0xF0, 0x9F })]
    public async Task CloseWithInvalidUtf8Reason_ClosesWith1007(byte[] reason)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Close, RawWebSocket.ClosePayload(1000, reason));
        await client.ExpectCloseAsync(1007);
    }

    [Fact]
    public async Task FramesAfterClientClose_AreIgnored()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendRawAsync([
            .. RawWebSocket.BuildFrame(Op.Close, RawWebSocket.ClosePayload(1000)),
            .. RawWebSocket.BuildFrame(Op.Text, Encoding.UTF8.GetBytes("""{"id":2,"op":"ping"}""")),
            .. RawWebSocket.BuildFrame(Op.Ping, "after close"u8),
        ]);
        var frame = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Close, frame.Opcode);
        Assert.Equal(1000, frame.Payload[0] << 8 | frame.Payload[1]);
    }
}
