using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using static Herald.Integration.Tests.Infrastructure.MsgPackWsClient;

namespace Herald.Integration.Tests;

/// <summary>
/// Binary publications end to end on a real server: published as an octet-stream body, as <c>"b64"</c> (JSON commands and
/// API bodies) and as a <c>herald.msgpack</c> bin, received unchanged as <c>"b64"</c> by <c>herald.json</c>, polls and
/// history, and as a bin by <c>herald.msgpack</c>; JSON publications reach <c>herald.msgpack</c> as MessagePack values.
/// </summary>
public sealed class BinaryPublicationTests : IAsyncLifetime
{
    private const int MaxBytes = 4096;
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(o => o.MaxMessageBytes = MaxBytes);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static byte[] AllByteValues() => Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();

    private static async Task<string> SubscribeJsonAsync(WsClient client, string channel)
    {
        var reply = await client.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""");
        return reply.GetProperty("result").GetProperty("epoch").GetString()!;
    }

    private static async Task SubscribeMsgPackAsync(MsgPackWsClient client, string channel)
    {
        var reply = await client.CommandAsync(new() { ["op"] = "subscribe", ["channel"] = channel });
        Assert.True(reply.ContainsKey("result"), Describe(reply));
    }

    [Fact]
    public async Task OctetStreamPublish_AllByteValuesAndEmpty_ReachJsonAsB64AndMsgPackAsBinUnchanged()
    {
        const string Channel = "chat:bytes-octet";
        await using var json = await _server.ConnectAsync();
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        await SubscribeJsonAsync(json, Channel);
        await SubscribeMsgPackAsync(msgpack, Channel);

        var payloads = new[] { AllByteValues(), [], AllByteValues().Reverse().ToArray() };
        foreach (var payload in payloads)
        {
            await _server.PublishBytesAsync(Channel, payload);
        }
        foreach (var payload in payloads)
        {
            var pub = (await json.NextPushAsync()).GetProperty("push").GetProperty("pub");
            Assert.False(pub.TryGetProperty("data", out _));
            Assert.Equal(payload, pub.GetProperty("b64").GetBytesFromBase64());

            var bin = await msgpack.NextPubAsync();
            Assert.Equal(payload, Assert.IsType<byte[]>(bin["data"]));
        }
        Assert.True(msgpack.OnlyBinaryFrames);
    }

    [Fact]
    public async Task JsonPublication_ReachesMsgPackAsConvertedValues()
    {
        const string Channel = "chat:json-to-msgpack";
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        await SubscribeMsgPackAsync(msgpack, Channel);
        await _server.PublishAsync(Channel, """{"text":"hé","n":-5,"big":18446744073709551615,"f":1.5,"ok":true,"none":null,"list":[1,"two",{"b64":"AA=="}]}""");

        var data = Map((await msgpack.NextPubAsync())["data"]);
        Assert.Equal("hé", data["text"]);
        Assert.Equal(-5L, data["n"]);
        Assert.Equal(ulong.MaxValue, data["big"]);
        Assert.Equal(1.5, data["f"]);
        Assert.Equal(true, data["ok"]);
        Assert.Null(data["none"]);
        var list = Assert.IsType<List<object?>>(data["list"]);
        Assert.Equal(1L, list[0]);
        Assert.Equal("two", list[1]);
        // A "b64" key inside application JSON is the application's: it stays a string.
        Assert.Equal("AA==", Map(list[2])["b64"]);
    }

    [Fact]
    public async Task MsgPackPublishOfBin_RoundTripsThroughJsonPushPollHistoryAndMsgPackHistory()
    {
        const string Channel = "chat:bytes-msgpack";
        await using var json = await _server.ConnectAsync();
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        var epoch = await SubscribeJsonAsync(json, Channel);
        var payload = AllByteValues();

        var published = await msgpack.CommandAsync(new() { ["op"] = "publish", ["channel"] = Channel, ["data"] = payload });
        Assert.Equal(1L, Map(published["result"])["offset"]);
        var empty = await msgpack.CommandAsync(new() { ["op"] = "publish", ["channel"] = Channel, ["data"] = Array.Empty<byte>() });
        Assert.Equal(2L, Map(empty["result"])["offset"]);

        var pushed = (await json.NextPushAsync()).GetProperty("push").GetProperty("pub");
        Assert.Equal(payload, pushed.GetProperty("b64").GetBytesFromBase64());
        Assert.Equal("", (await json.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("b64").GetString());
        // The publisher's info travels with bytes as with JSON.
        Assert.Equal(JsonValueKind.Object, pushed.GetProperty("info").ValueKind);

        using var poll = await _server.Http.GetAsync($"/poll?channel={Channel}&offset=0&epoch={epoch}");
        using var polled = JsonDocument.Parse(await poll.Content.ReadAsStringAsync());
        var polledPubs = polled.RootElement.GetProperty("channels").GetProperty(Channel).GetProperty("publications");
        Assert.Equal(payload, polledPubs[0].GetProperty("b64").GetBytesFromBase64());
        Assert.Equal("", polledPubs[1].GetProperty("b64").GetString());

        var history = await json.CommandAsync($$"""{"op":"history","channel":"{{Channel}}"}""");
        Assert.Equal(payload, history.GetProperty("result").GetProperty("publications")[0].GetProperty("b64").GetBytesFromBase64());

        using var api = await _server.Api.GetAsync($"/api/channels/{Channel}/history");
        using var apiHistory = JsonDocument.Parse(await api.Content.ReadAsStringAsync());
        Assert.Equal(payload, apiHistory.RootElement.GetProperty("publications")[0].GetProperty("b64").GetBytesFromBase64());

        var packed = await msgpack.CommandAsync(new() { ["op"] = "history", ["channel"] = Channel });
        var pubs = Assert.IsType<List<object?>>(Map(packed["result"])["publications"]);
        Assert.Equal(payload, Map(pubs[0])["data"]);
        Assert.Equal(Array.Empty<byte>(), Map(pubs[1])["data"]);
    }

    [Fact]
    public async Task MsgPackSubscribeWithSince_RecoversBytesAsBinThenGoesLive()
    {
        const string Channel = "chat:bytes-recover";
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        var first = await msgpack.CommandAsync(new() { ["op"] = "subscribe", ["channel"] = Channel });
        var epoch = (string)Map(first["result"])["epoch"]!;
        await msgpack.CommandAsync(new() { ["op"] = "unsubscribe", ["channel"] = Channel });
        await _server.PublishBytesAsync(Channel, [1, 2, 3]);
        await _server.PublishAsync(Channel, """{"n":2}""");
        await _server.PublishBytesAsync(Channel, [0xff]);

        var again = await msgpack.CommandAsync(new()
        {
            ["op"] = "subscribe",
            ["channel"] = Channel,
            ["since"] = new Dictionary<string, object?> { ["offset"] = 1, ["epoch"] = epoch },
        });
        var result = Map(again["result"]);
        Assert.Equal(true, result["recovered"]);
        var pubs = Assert.IsType<List<object?>>(result["publications"]);
        Assert.Equal(2, pubs.Count);
        Assert.Equal(2L, Map(Map(pubs[0])["data"])["n"]);
        Assert.Equal(new byte[] { 0xff }, Map(pubs[1])["data"]);

        await _server.PublishBytesAsync(Channel, [4]);
        var live = await msgpack.NextPubAsync();
        Assert.Equal(4L, live["offset"]);
        Assert.Equal(new byte[] { 4 }, live["data"]);
    }

    [Fact]
    public async Task JsonCommandPublishWithB64_PublishesBytes_AndBadB64IsRefused()
    {
        const string Channel = "chat:bytes-b64";
        await using var json = await _server.ConnectAsync();
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        await SubscribeMsgPackAsync(msgpack, Channel);
        var payload = AllByteValues();

        var ok = await json.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","b64":"{{Convert.ToBase64String(payload)}}"}""");
        Assert.Equal(1UL, ok.GetProperty("result").GetProperty("offset").GetUInt64());
        Assert.Equal(payload, (await msgpack.NextPubAsync())["data"]);

        foreach (var (body, expected) in new[]
        {
            ("""{"op":"publish","channel":"chat:bytes-b64","b64":"not base64!"}""", "base64"),
            ("""{"op":"publish","channel":"chat:bytes-b64","b64":"AAA"}""", "base64"),
            ("""{"op":"publish","channel":"chat:bytes-b64","b64":"AA==","data":{}}""", "not both"),
            ("""{"op":"publish","channel":"chat:bytes-b64","b64":12}""", "wrong type"),
            ("""{"op":"rpc","method":"m","b64":"AA=="}""", "only for 'publish'"),
        })
        {
            var refused = await json.CommandAsync(body);
            var error = refused.GetProperty("error");
            Assert.Equal("bad_request", error.GetProperty("code").GetString());
            Assert.Contains(expected, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task CmdEndpointPublishWithB64_PublishesBytes()
    {
        const string Channel = "chat:bytes-cmd";
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        await SubscribeMsgPackAsync(msgpack, Channel);
        using var response = await _server.Http.PostAsync("/cmd", new StringContent($$"""{"id":1,"op":"publish","channel":"{{Channel}}","b64":"3q2+7w=="}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(new byte[] { 0xde, 0xad, 0xbe, 0xef }, (await msgpack.NextPubAsync())["data"]);
    }

    [Fact]
    public async Task ApiPublish_OctetStreamAndB64_AtTheLimitPass_OverItPayloadTooLarge()
    {
        const string Channel = "chat:bytes-limit";
        await using var msgpack = await MsgPackWsClient.ConnectAsync(_server);
        await SubscribeMsgPackAsync(msgpack, Channel);
        var max = Enumerable.Range(0, MaxBytes).Select(i => (byte)(i * 7)).ToArray();

        await _server.PublishBytesAsync(Channel, max);
        Assert.Equal(max, (await msgpack.NextPubAsync())["data"]);

        using (var response = await PostOctetsAsync($"/api/publish?channel={Channel}", new byte[MaxBytes + 1]))
        {
            await AssertErrorAsync(response, HttpStatusCode.RequestEntityTooLarge, "payload_too_large");
        }
        // The limit is on the decoded bytes: MaxBytes in base64 passes, one more does not.
        using (var response = await _server.Api.PostAsync("/api/publish", new StringContent($$"""{"channel":"{{Channel}}","b64":"{{Convert.ToBase64String(max)}}"}""")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(max, (await msgpack.NextPubAsync())["data"]);
        using (var response = await _server.Api.PostAsync("/api/publish", new StringContent($$"""{"channel":"{{Channel}}","b64":"{{Convert.ToBase64String(new byte[MaxBytes + 1])}}"}""")))
        {
            await AssertErrorAsync(response, HttpStatusCode.RequestEntityTooLarge, "payload_too_large");
        }
        // Over a connection the whole message fits in MaxMessageBytes: a bin just under it passes.
        var nearLimit = await msgpack.CommandAsync(new() { ["op"] = "publish", ["channel"] = Channel, ["data"] = new byte[MaxBytes - 100] });
        Assert.True(nearLimit.ContainsKey("result"), Describe(nearLimit));
        Assert.Equal(MaxBytes - 100, Assert.IsType<byte[]>((await msgpack.NextPubAsync())["data"]).Length);
    }

    [Fact]
    public async Task ApiPublish_BadBinaryRequests_AreRefusedPlainly()
    {
        using (var response = await PostOctetsAsync("/api/publish", [1]))
        {
            await AssertErrorAsync(response, HttpStatusCode.BadRequest, "bad_request");
        }
        using (var response = await PostOctetsAsync("/api/publish?channel=bad%20name", [1]))
        {
            await AssertErrorAsync(response, HttpStatusCode.BadRequest, "invalid_channel");
        }
        using (var response = await _server.Api.PostAsync("/api/publish", new StringContent("""{"channel":"chat:x","b64":"@@@@"}""")))
        {
            await AssertErrorAsync(response, HttpStatusCode.BadRequest, "bad_request");
        }
        using (var response = await _server.Api.PostAsync("/api/publish", new StringContent("""{"channel":"chat:x","b64":"AA==","data":1}""")))
        {
            await AssertErrorAsync(response, HttpStatusCode.BadRequest, "bad_request");
        }
    }

    [Fact]
    public async Task OctetStreamPublish_WithIdempotencyKey_PublishesOnce()
    {
        const string Channel = "chat:bytes-idem";
        using var first = await PostOctetsAsync($"/api/publish?channel={Channel}&idempotency_key=k1", [9]);
        using var second = await PostOctetsAsync($"/api/publish?channel={Channel}&idempotency_key=k1", [9]);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(await first.Content.ReadAsStringAsync(), await second.Content.ReadAsStringAsync());
        using var history = await _server.Api.GetAsync($"/api/channels/{Channel}/history");
        using var doc = JsonDocument.Parse(await history.Content.ReadAsStringAsync());
        Assert.Equal(1UL, doc.RootElement.GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task MixedSubscribers_ShareOneEncodingPerProtocol()
    {
        const string Channel = "chat:bytes-mixed";
        var jsonClients = new List<WsClient>();
        var packClients = new List<MsgPackWsClient>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var json = await _server.ConnectAsync();
                jsonClients.Add(json);
                await SubscribeJsonAsync(json, Channel);
                var pack = await MsgPackWsClient.ConnectAsync(_server);
                packClients.Add(pack);
                await SubscribeMsgPackAsync(pack, Channel);
            }
            for (var n = 1; n <= 20; n++)
            {
                if (n % 2 == 0)
                {
                    await _server.PublishBytesAsync(Channel, [(byte)n]);
                }
                else
                {
                    await _server.PublishAsync(Channel, $$"""{"n":{{n}}}""");
                }
            }
            foreach (var json in jsonClients)
            {
                for (var n = 1; n <= 20; n++)
                {
                    var pub = (await json.NextPushAsync()).GetProperty("push").GetProperty("pub");
                    Assert.Equal((ulong)n, pub.GetProperty("offset").GetUInt64());
                    if (n % 2 == 0)
                    {
                        Assert.Equal(new[] { (byte)n }, pub.GetProperty("b64").GetBytesFromBase64());
                    }
                    else
                    {
                        Assert.Equal(n, pub.GetProperty("data").GetProperty("n").GetInt32());
                    }
                }
            }
            foreach (var pack in packClients)
            {
                for (var n = 1; n <= 20; n++)
                {
                    var pub = await pack.NextPubAsync();
                    Assert.Equal((long)n, pub["offset"]);
                    if (n % 2 == 0)
                    {
                        Assert.Equal(new[] { (byte)n }, pub["data"]);
                    }
                    else
                    {
                        Assert.Equal((long)n, Map(pub["data"])["n"]);
                    }
                }
            }
        }
        finally
        {
            foreach (var client in jsonClients)
            {
                await client.DisposeAsync();
            }
            foreach (var client in packClients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private async Task<HttpResponseMessage> PostOctetsAsync(string path, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return await _server.Api.PostAsync(path, content);
    }

    private static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string code)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{response.StatusCode}: {body}");
        using var doc = JsonDocument.Parse(body);
        Assert.Equal(code, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
    }
}
