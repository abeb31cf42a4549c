using System.Text;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn group 5 (fragmentation).</summary>
public sealed class FragmentationTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    public async Task TextMessageInManyFragmentsWithInterleavedPings_IsHandled(int fragmentSize)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var message = Encoding.UTF8.GetBytes("""{"id":2,"op":"ping"}""");
        var pings = 0;
        for (var offset = 0; offset < message.Length; offset += fragmentSize)
        {
            var take = Math.Min(fragmentSize, message.Length - offset);
            var last = offset + take == message.Length;
            await client.SendFrameAsync(offset == 0 ? Op.Text : Op.Continuation, message.AsSpan(offset, take), fin: last);
            if (!last)
            {
                await client.SendFrameAsync(Op.Ping, $"p{pings++}");
            }
        }
        // Every ping is answered, in order, while the message is still open; then the message itself.
        for (var i = 0; i < pings; i++)
        {
            var pong = await client.ReadNonPingFrameAsync();
            Assert.Equal(Op.Pong, pong.Opcode);
            Assert.Equal($"p{i}", pong.Text);
        }
        var reply = await client.ReadReplyAsync();
        Assert.Equal(2, reply.GetProperty("id").GetInt64());
        Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
    }

    [Fact]
    public async Task FragmentedMessageWithEmptyFragments_IsHandled()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, [], fin: false);
        await client.SendFrameAsync(Op.Continuation, """{"id":2,""", fin: false);
        await client.SendFrameAsync(Op.Continuation, [], fin: false);
        await client.SendFrameAsync(Op.Continuation, "\"op\":\"ping\"}", fin: false);
        await client.SendFrameAsync(Op.Continuation, [], fin: true);
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }

    [Fact]
    public async Task FragmentedMessageWithPongsInterleaved_IsHandled()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, """{"id":2,""", fin: false);
        await client.SendFrameAsync(Op.Pong, "unsolicited");
        await client.SendFrameAsync(Op.Continuation, "\"op\":\"ping\"}", fin: true);
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ContinuationWithoutStart_ClosesWith1002(bool fin)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Continuation, """{"id":2,"op":"ping"}""", fin: fin);
        await client.ExpectCloseAsync(1002);
    }

    [Fact]
    public async Task ContinuationAfterFinishedMessage_ClosesWith1002()
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, """{"id":2,"op":"ping"}""", fin: true);
        await client.SendFrameAsync(Op.Continuation, "\n", fin: true);
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData(Op.Ping)]
    [InlineData(Op.Pong)]
    [InlineData(Op.Close)]
    public async Task FragmentedControlFrame_ClosesWith1002(byte opcode)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var payload = opcode == Op.Close ? RawWebSocket.ClosePayload(1000) : Encoding.UTF8.GetBytes("frag");
        await client.SendFrameAsync(opcode, payload, fin: false);
        // The first frame is already a protocol error: the server may close (and reset) before the second one is
        // written, so only the close frame it sent is asserted, not that the rest could still be sent.
        try
        {
            await client.SendFrameAsync(Op.Continuation, "ment", fin: true);
        }
        catch (IOException)
        {
        }
        await client.ExpectCloseAsync(1002);
    }

    [Theory]
    [InlineData(Op.Text)]
    [InlineData(Op.Binary)]
    public async Task NewDataFrameWhileFragmentedMessageIsOpen_ClosesWith1002(byte opcode)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, """{"id":2,""", fin: false);
        await client.SendFrameAsync(opcode, "\"op\":\"ping\"}", fin: true);
        await client.ExpectCloseAsync(1002);
    }
}
