using System.Diagnostics;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn group 9 (limits) and group 1.2 (binary), against a server limited to <see cref="RfcServerFixture.MaxMessageBytes"/>.</summary>
public sealed class LimitTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private const int Max = RfcServerFixture.MaxMessageBytes;
    private int Port => fixture.Port;

    [Theory]
    [InlineData(long.MaxValue)]
    [InlineData(1L << 32)]
    [InlineData(70_000L)]
    public async Task HugeAnnouncedLengthWithTrickle_ClosesWith1009Promptly(long announced)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var started = Stopwatch.StartNew();
        // The header, and a trickle of the payload: nowhere near what the header announces.
        await client.SendFrameAsync(Op.Text, "{\"id\":2,"u8, announcedLength: announced);
        // Mid-frame there is no way to send a close frame; the client half-closes instead.
        await client.ExpectCloseAsync(1009, TimeSpan.FromSeconds(5), replyWithClose: false);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"close 1009 took {started.Elapsed}");
    }

    [Fact]
    public async Task HugeAnnouncedLengthBeforeConnect_ClosesWith1009Promptly()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendFrameAsync(Op.Text, [], announcedLength: long.MaxValue);
        await client.ExpectCloseAsync(1009, TimeSpan.FromSeconds(5), replyWithClose: false);
    }

    [Fact]
    public async Task PingAndOversizedHeaderInOneSegment_PongArrivesBeforeClose1009()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendRawAsync([
            .. RawWebSocket.BuildFrame(Op.Ping, "first"u8),
            .. RawWebSocket.BuildFrame(Op.Text, [], announcedLength: long.MaxValue),
        ]);
        var pong = await client.ReadNonPingFrameAsync();
        Assert.Equal(Op.Pong, pong.Opcode);
        Assert.Equal("first", pong.Text);
        await client.ExpectCloseAsync(1009, TimeSpan.FromSeconds(5), replyWithClose: false);
    }

    [Fact]
    public async Task AnnouncedLengthOneOverLimit_ClosesWith1009()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendTextAsync(FramingTests.Padded("""{"id":2,"op":"ping" """, "}", Max + 1));
        await client.ExpectCloseAsync(1009);
    }

    [Fact]
    public async Task AnnouncedLengthOneOverLimitWithoutPayload_ClosesWith1009()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, [], announcedLength: Max + 1);
        await client.ExpectCloseAsync(1009, replyWithClose: false);
    }

    [Fact]
    public async Task MessageExactlyAtLimit_IsAccepted()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendTextAsync(FramingTests.Padded("""{"id":2,"op":"ping" """, "}", Max));
        var reply = await client.ReadReplyAsync();
        Assert.Equal(2, reply.GetProperty("id").GetInt64());
        Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
    }

    [Fact]
    public async Task FragmentedMessageExactlyAtLimit_IsAccepted()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var message = System.Text.Encoding.UTF8.GetBytes(FramingTests.Padded("""{"id":2,"op":"ping" """, "}", Max));
        for (var offset = 0; offset < Max; offset += 100)
        {
            var take = Math.Min(100, Max - offset);
            await client.SendFrameAsync(offset == 0 ? Op.Text : Op.Continuation, message.AsSpan(offset, take), fin: offset + take == Max);
        }
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }

    [Fact]
    public async Task FragmentedMessageOverLimit_ClosesWith1009()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var message = System.Text.Encoding.UTF8.GetBytes(FramingTests.Padded("""{"id":2,"op":"ping" """, "}", Max + 1));
        for (var offset = 0; offset < message.Length; offset += 100)
        {
            var take = Math.Min(100, message.Length - offset);
            await client.SendFrameAsync(offset == 0 ? Op.Text : Op.Continuation, message.AsSpan(offset, take), fin: offset + take == message.Length);
        }
        await client.ExpectCloseAsync(1009);
    }

    [Fact]
    public async Task FragmentedMessageAnnouncingMoreThanLimit_ClosesWith1009BeforeThePayload()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, new byte[Max / 2], fin: false);
        await client.SendFrameAsync(Op.Continuation, [], fin: true, announcedLength: Max);
        await client.ExpectCloseAsync(1009, replyWithClose: false);
    }

    [Fact]
    public async Task OversizedMessageAfterValidOnes_ValidOnesAreAnsweredThenClosesWith1009()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendRawAsync([
            .. RawWebSocket.BuildFrame(Op.Text, """{"id":2,"op":"ping"}"""u8),
            .. RawWebSocket.BuildFrame(Op.Text, """{"id":3,"op":"ping"}"""u8),
        ]);
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
        Assert.Equal(3, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
        await client.SendTextAsync(FramingTests.Padded("""{"id":4,"op":"ping" """, "}", Max * 2));
        await client.ExpectCloseAsync(1009);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(16)]
    [InlineData(Max)]
    public async Task BinaryMessage_ClosesWith1003(int size)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Binary, new byte[size]);
        await client.ExpectCloseAsync(1003);
    }

    [Fact]
    public async Task FragmentedBinaryMessage_ClosesWith1003()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Binary, new byte[10], fin: false);
        await client.SendFrameAsync(Op.Ping, "in between");
        await client.SendFrameAsync(Op.Continuation, new byte[10], fin: true);
        await client.ExpectCloseAsync(1003);
    }
}
