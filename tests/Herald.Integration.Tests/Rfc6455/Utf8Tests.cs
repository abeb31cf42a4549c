using System.Text;

namespace Herald.Integration.Tests.Rfc6455;

/// <summary>Autobahn group 6 (UTF-8 handling).</summary>
public sealed class Utf8Tests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    public static TheoryData<string, byte[]> InvalidSequences => new()
    {
        { "0xFF byte", [0xFF] },
        { "lone continuation byte", [0x80] },
        { "overlong '/'", [0xC0, 0xAF] },
        { "overlong NUL", [0xE0, 0x80, 0x80] },
        { "UTF-16 surrogate U+D800", [0xED, 0xA0, 0x80] },
        { "beyond U+10FFFF", [0xF4, 0x90, 0x80, 0x80] },
        { "truncated 2-byte sequence at end", [0xCE] },
        { "truncated 4-byte sequence at end", [0xF0, 0x9F, 0x98] },
    };

    [Theory]
    [MemberData(nameof(InvalidSequences))]
    public async Task InvalidUtf8InTextMessage_ClosesWith1007(string what, byte[] bad)
    {
        Assert.NotEmpty(what);
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendFrameAsync(Op.Text, [.. "{\"id\":2,\"op\":\"ping\",\"x\":\""u8, .. bad]);
        await client.ExpectCloseAsync(1007);
    }

    [Theory]
    [MemberData(nameof(InvalidSequences))]
    public async Task InvalidUtf8SplitAcrossFragments_ClosesWith1007(string what, byte[] bad)
    {
        Assert.NotEmpty(what);
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        byte[] message = [.. "{\"id\":2,\"op\":\"ping\",\"x\":\""u8, .. bad, .. "\"}"u8];
        for (var i = 0; i < message.Length; i++)
        {
            await client.SendFrameAsync(i == 0 ? Op.Text : Op.Continuation, message.AsSpan(i, 1), fin: i == message.Length - 1);
        }
        await client.ExpectCloseAsync(1007);
    }

    [Fact]
    public async Task InvalidUtf8BeforeConnect_ClosesWith1007()
    {
        await using var client = await RawWebSocket.OpenAsync(Port);
        await client.SendFrameAsync(Op.Text, [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64]);
        await client.ExpectCloseAsync(1007);
    }

    [Theory]
    [InlineData("κόσμε")]
    [InlineData("😀 ok")]
    [InlineData("\u07FF\uFFFD\U0010FFFF")]
    public async Task ValidMultiByteUtf8InOneFrame_IsAccepted(string text)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        await client.SendTextAsync($$"""{"id":2,"op":"ping","x":"{{text}}"}""");
        Assert.Equal(2, (await client.ReadReplyAsync()).GetProperty("id").GetInt64());
    }

    [Theory]
    [InlineData("κόσμε")]
    [InlineData("😀 ok")]
    [InlineData("\u07FF\uFFFD\U0010FFFF")]
    public async Task ValidMultiByteUtf8SplitAcrossFragments_IsAccepted(string text)
    {
        await using var client = await RawWebSocket.OpenConnectedAsync(Port);
        var message = Encoding.UTF8.GetBytes($$"""{"id":2,"op":"ping","x":"{{text}}"}""");
        // One byte per fragment: every multi-byte character is split across frames.
        for (var i = 0; i < message.Length; i++)
        {
            await client.SendFrameAsync(i == 0 ? Op.Text : Op.Continuation, message.AsSpan(i, 1), fin: i == message.Length - 1);
        }
        var reply = await client.ReadReplyAsync();
        Assert.Equal(2, reply.GetProperty("id").GetInt64());
        Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
    }
}
