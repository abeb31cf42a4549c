namespace Herald.Integration.Tests.Rfc6455;

/// <summary>The opening handshake (RFC 6455 §4.2; Autobahn has no group for it, the server side is ours to check).</summary>
public sealed class HandshakeTests(RfcServerFixture fixture) : IClassFixture<RfcServerFixture>
{
    private int Port => fixture.Port;

    [Fact]
    public async Task HeraldJsonOffered_Switches101WithAcceptAndProtocol()
    {
        var key = RawWebSocket.NewKey();
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, key));
        var response = client.Handshake!;
        Assert.Equal(101, response.Status);
        Assert.Equal(RawWebSocket.ExpectedAccept(key), response.Header("Sec-WebSocket-Accept"));
        Assert.Equal("herald.json", response.Header("Sec-WebSocket-Protocol"));
        Assert.Equal("websocket", response.Header("Upgrade"), ignoreCase: true);
        Assert.Contains("upgrade", response.Header("Connection") ?? "", StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("chat, herald.json")]
    [InlineData("herald.json, chat")]
    [InlineData("  herald.json  ")]
    public async Task HeraldJsonAmongSeveralOffered_IsSelected(string offered)
    {
        var key = RawWebSocket.NewKey();
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, key, protocol: offered));
        Assert.Equal(101, client.Handshake!.Status);
        Assert.Equal("herald.json", client.Handshake.Header("Sec-WebSocket-Protocol"));
    }

    [Fact]
    public async Task NoSubprotocolOffered_Switches101WithoutProtocolHeader()
    {
        var key = RawWebSocket.NewKey();
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, key, protocol: null));
        Assert.Equal(101, client.Handshake!.Status);
        Assert.Equal(RawWebSocket.ExpectedAccept(key), client.Handshake.Header("Sec-WebSocket-Accept"));
        Assert.Null(client.Handshake.Header("Sec-WebSocket-Protocol"));
    }

    [Fact]
    public async Task NoSubprotocolOffered_ConnectionStillWorks()
    {
        var key = RawWebSocket.NewKey();
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, key, protocol: null));
        Assert.Equal(101, client.Handshake!.Status);
        await client.SendTextAsync("""{"id":1,"op":"connect"}""");
        var reply = await client.ReadReplyAsync();
        Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
    }

    [Theory]
    [InlineData("chat")]
    [InlineData("herald.cbor, v2.herald")]
    [InlineData("HERALD.JSON")]
    public async Task OnlyUnsupportedSubprotocolsOffered_Returns400(string offered)
    {
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, RawWebSocket.NewKey(), protocol: offered));
        Assert.Equal(400, client.Handshake!.Status);
        Assert.Null(client.Handshake.Header("Sec-WebSocket-Accept"));
    }

    [Fact]
    public async Task PlainGet_Returns426()
    {
        var request = $"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{Port}\r\nConnection: close\r\n\r\n";
        await using var client = await RawWebSocket.HandshakeAsync(Port, request);
        Assert.Equal(426, client.Handshake!.Status);
        Assert.Equal("websocket", client.Handshake.Header("Upgrade"), ignoreCase: true);
        Assert.Equal("13", client.Handshake.Header("Sec-WebSocket-Version"));
    }

    [Fact]
    public async Task UpgradeToSomethingElse_Returns426()
    {
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, RawWebSocket.NewKey(), upgrade: "h2c"));
        Assert.Equal(426, client.Handshake!.Status);
    }

    [Theory]
    [InlineData("8")]
    [InlineData("12")]
    [InlineData("14")]
    [InlineData("")]
    public async Task WrongWebSocketVersion_Returns426WithVersion13(string version)
    {
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, RawWebSocket.NewKey(), version: version));
        Assert.Equal(426, client.Handshake!.Status);
        Assert.Equal("13", client.Handshake.Header("Sec-WebSocket-Version"));
    }

    [Fact]
    public async Task MissingWebSocketVersion_Returns426()
    {
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, RawWebSocket.NewKey(), version: null));
        Assert.Equal(426, client.Handshake!.Status);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not-base64-at-all!!!!!!=")]
    [InlineData("c2hvcnQ=")] // "short": decodes to 5 bytes
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")] // 20 bytes
    public async Task BadKey_Returns400(string key)
    {
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, key));
        Assert.Equal(400, client.Handshake!.Status);
        Assert.Null(client.Handshake.Header("Sec-WebSocket-Accept"));
    }

    [Fact]
    public async Task MissingKey_Returns400()
    {
        await using var client = await RawWebSocket.HandshakeAsync(Port, RawWebSocket.UpgradeRequest(Port, key: null));
        Assert.Equal(400, client.Handshake!.Status);
    }
}
