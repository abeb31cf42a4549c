namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn groups 3 (reserved bits) and 4 (reserved opcodes).</summary>
public sealed class ReservedBitsTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    [Theory]
    [InlineData(1)] // RSV3
    [InlineData(2)] // RSV2
    [InlineData(4)] // RSV1: no extension (permessage-deflate) was negotiated
    [InlineData(3)]
    [InlineData(7)]
    public async Task ReservedBitSet_ClosesWith1002(int rsv)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, """{"id":2,"op":"ping"}""", rsv: rsv);
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task ReservedBitSetOnPing_ClosesWith1002(int rsv)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Ping, "hello", rsv: rsv);
        await client.ExpectCloseAsync(1002);
    }

    [Fact]
    public async Task ReservedBitSetAfterValidMessage_ValidMessageIsAnsweredThenClosesWith1002()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendTextAsync("""{"id":2,"op":"ping"}""");
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
        await client.SendFrameAsync(Op.Text, """{"id":3,"op":"ping"}""", rsv: 2);
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData(0x3)]
    [InlineData(0x4)]
    [InlineData(0x5)]
    [InlineData(0x6)]
    [InlineData(0x7)]
    [InlineData(0xB)]
    [InlineData(0xC)]
    [InlineData(0xD)]
    [InlineData(0xE)]
    [InlineData(0xF)]
    public async Task ReservedOpcode_ClosesWith1002(int opcode)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync((byte)opcode, "reserved");
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData(0x3)]
    [InlineData(0xB)]
    public async Task ReservedOpcodeWithEmptyPayload_ClosesWith1002(int opcode)
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendFrameAsync((byte)opcode, []);
        await client.ExpectCloseAsync(1002);
    }
}
