using System.Buffers;
using System.Net.WebSockets;
using Herald.Integration.Tests.Infrastructure;
using MessagePack;
using static Herald.Integration.Tests.Infrastructure.MsgPackWsClient;

namespace Herald.Integration.Tests;

/// <summary>The <c>herald.msgpack</c> subprotocol's framing, negotiation and bad input, on a real server.</summary>
public sealed class MsgPackProtocolTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(o => o.MaxMessageBytes = 64 * 1024);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Theory]
    [InlineData("herald.msgpack", "herald.msgpack")]
    [InlineData("herald.msgpack, herald.json", "herald.msgpack")]
    [InlineData("herald.json, herald.msgpack", "herald.json")]
    public async Task Handshake_PicksTheClientsFirstSupportedSubprotocol(string offered, string selected)
    {
        using var socket = new ClientWebSocket();
        foreach (var protocol in offered.Split(", "))
        {
            socket.Options.AddSubProtocol(protocol);
        }
        await socket.ConnectAsync(_server.WebSocketUri, CancellationToken.None);
        Assert.Equal(selected, socket.SubProtocol);
    }

    [Fact]
    public async Task SeveralCommandsInOneBinaryFrame_AreAnsweredInOrder()
    {
        await using var client = await MsgPackWsClient.OpenAsync(_server.WebSocketUri);
        var frame = Encode(new Dictionary<string, object?> { ["id"] = 1, ["op"] = "connect" })
            .Concat(Encode(new Dictionary<string, object?> { ["id"] = 2, ["op"] = "ping" }))
            .Concat(Encode(new Dictionary<string, object?> { ["id"] = 3, ["op"] = "subscribe", ["channel"] = "chat:frame" }))
            .ToArray();
        await client.SendRawAsync(frame);
        for (var id = 1L; id <= 3; id++)
        {
            var reply = await client.NextReplyAsync();
            Assert.Equal(id, reply["id"]);
            Assert.True(reply.ContainsKey("result"), Describe(reply));
        }
    }

    [Fact]
    public async Task TextFrameOnMsgPackConnection_Closes1003()
    {
        await using var client = await MsgPackWsClient.ConnectAsync(_server);
        await client.SendRawAsync("""{"id":1,"op":"ping"}"""u8.ToArray(), WebSocketMessageType.Text);
        Assert.Equal((WebSocketCloseStatus)1003, await client.WaitClosedAsync());
    }

    public static TheoryData<string, byte[], long?, string> BadMessages()
    {
        var data = new TheoryData<string, byte[], long?, string>
        {
            { "not a map", Encode(new List<object?> { 1, 2 }), null, "must be a MessagePack map" },
            { "a string", Encode("ping"), null, "must be a MessagePack map" },
            { "integer key", IntegerKeyMap(), null, "keys must be MessagePack strings" },
            { "op of the wrong type", Encode(new Dictionary<string, object?> { ["id"] = 7, ["op"] = 42 }), 7L, "wrong type" },
            { "bin outside data", Encode(new Dictionary<string, object?> { ["id"] = 8, ["op"] = "publish", ["channel"] = "chat:x", ["data"] = new Dictionary<string, object?> { ["raw"] = new byte[] { 1 } } }), 8L, "bin" },
            { "bin and b64", Encode(new Dictionary<string, object?> { ["id"] = 9, ["op"] = "publish", ["channel"] = "chat:x", ["data"] = new byte[] { 1 }, ["b64"] = "AA==" }), 9L, "not both" },
            { "bin data for rpc", Encode(new Dictionary<string, object?> { ["id"] = 10, ["op"] = "rpc", ["method"] = "m", ["data"] = new byte[] { 1 } }), 10L, "only for 'publish'" },
            { "ext type", ExtensionValue(11), 11L, "extension" },
            { "NaN", Encode(new Dictionary<string, object?> { ["id"] = 12, ["op"] = "publish", ["channel"] = "chat:x", ["data"] = double.NaN }), 12L, "NaN" },
            { "nested 10,000 deep", Nested(13, 10_000), 13L, "deeper than 64" },
            { "truncated", Encode(new Dictionary<string, object?> { ["id"] = 14, ["op"] = "ping" })[..^2], null, "truncated" },
            { "0xc1", [0xc1], null, "malformed" },
            { "huge map header", [0xdf, 0xff, 0xff, 0xff, 0xff], null, "truncated" },
            // Found by the property-based fuzz test: the library reports this length as out of range, not as the end.
            { "bin32 length past the end", [0xc6, 0x7f, 0xff, 0xff, 0xff, 0x01], null, "truncated" },
        };
        return data;
    }

    [Theory]
    [MemberData(nameof(BadMessages))]
    public async Task BadMessage_GetsBadRequest_AndConnectionGoesOn(string what, byte[] message, long? id, string expected)
    {
        await using var client = await MsgPackWsClient.ConnectAsync(_server);
        await client.SendRawAsync(message);
        var reply = await client.NextReplyAsync();
        var error = Map(reply["error"]);
        Assert.True((string?)error["code"] == "bad_request", $"{what}: {Describe(reply)}");
        Assert.Contains(expected, (string)error["message"]!, StringComparison.OrdinalIgnoreCase);
        if (id is { } expectedId)
        {
            Assert.Equal(expectedId, reply["id"]);
        }
        else
        {
            Assert.False(reply.ContainsKey("id"), what);
        }
        var pong = await client.CommandAsync(new() { ["op"] = "ping" });
        Assert.True(pong.ContainsKey("result"), what);
    }

    [Fact]
    public async Task MalformedValue_DropsTheRestOfItsFrame_ButNotTheCommandsBeforeIt()
    {
        await using var client = await MsgPackWsClient.ConnectAsync(_server);
        var frame = Encode(new Dictionary<string, object?> { ["id"] = 1, ["op"] = "ping" })
            .Concat(new byte[] { 0xc1 })
            .Concat(Encode(new Dictionary<string, object?> { ["id"] = 2, ["op"] = "ping" }))
            .ToArray();
        await client.SendRawAsync(frame);
        Assert.Equal(1L, (await client.NextReplyAsync())["id"]);
        var error = await client.NextReplyAsync();
        Assert.Equal("bad_request", Map(error["error"])["code"]);
        var pong = await client.CommandAsync(new() { ["op"] = "ping" });
        Assert.True(pong.ContainsKey("result"));
    }

    [Fact]
    public async Task FrameOverMaxMessageBytes_Closes1009()
    {
        await using var client = await MsgPackWsClient.ConnectAsync(_server);
        await client.SendRawAsync(Encode(new Dictionary<string, object?> { ["op"] = "publish", ["channel"] = "chat:x", ["data"] = new byte[64 * 1024] }));
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await client.WaitClosedAsync());
    }

    private static byte[] IntegerKeyMap()
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        writer.WriteMapHeader(1);
        writer.Write(1);
        writer.Write("op");
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] ExtensionValue(long id)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        writer.WriteMapHeader(3);
        writer.Write("id");
        writer.Write(id);
        writer.Write("op");
        writer.Write("ping");
        writer.Write("info");
        writer.WriteExtensionFormat(new ExtensionResult(5, new byte[] { 1, 2 }));
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] Nested(long id, int depth)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        writer.WriteMapHeader(4);
        writer.Write("id");
        writer.Write(id);
        writer.Write("op");
        writer.Write("publish");
        writer.Write("channel");
        writer.Write("chat:x");
        writer.Write("data");
        for (var i = 0; i < depth; i++)
        {
            writer.WriteArrayHeader(1);
        }
        writer.WriteNil();
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}
