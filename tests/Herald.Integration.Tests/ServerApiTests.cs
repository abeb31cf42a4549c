using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class ServerApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Theory]
    [InlineData("POST", "/api/publish")]
    [InlineData("GET", "/api/channels/chat:x/history")]
    [InlineData("GET", "/api/channels/chat:x/presence")]
    [InlineData("GET", "/api/stats")]
    public async Task Api_WithoutKeyOrWithWrongKey_Is401(string method, string path)
    {
        using var none = new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("""{"channel":"chat:x","data":1}""") };
        using var noneResponse = await _server.Http.SendAsync(none);
        Assert.Equal(HttpStatusCode.Unauthorized, noneResponse.StatusCode);
        Assert.Contains("\"unauthorized\"", await noneResponse.Content.ReadAsStringAsync());

        using var wrong = new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("""{"channel":"chat:x","data":1}""") };
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", TestServer.ApiKey + "x");
        using var wrongResponse = await _server.Http.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.Unauthorized, wrongResponse.StatusCode);
        Assert.Equal(0, _server.Node.Metrics.Publications);
    }

    [Fact]
    public async Task KeepAliveConnection_WrongKeyAfterTheRightOne_IsStill401()
    {
        // One connection for every request: Kestrel hands back the same header string when a request repeats the
        // previous one's bytes, and the key check lets a string it accepted through by reference. A different key on
        // the same connection must still be hashed and refused, and the right one accepted again afterwards.
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync("127.0.0.1", _server.Port);
        var stream = tcp.GetStream();
        var right = "Bearer " + TestServer.ApiKey;
        Assert.Equal(200, await PublishOnAsync(stream, right));
        Assert.Equal(200, await PublishOnAsync(stream, right));
        Assert.Equal(401, await PublishOnAsync(stream, "Bearer " + TestServer.ApiKey + "x"));
        Assert.Equal(401, await PublishOnAsync(stream, "Bearer " + TestServer.ApiKey[..^1]));
        Assert.Equal(401, await PublishOnAsync(stream, TestServer.ApiKey));
        Assert.Equal(200, await PublishOnAsync(stream, right));
        Assert.Equal(200, await PublishOnAsync(stream, "bearer  " + TestServer.ApiKey + " "));
        Assert.Equal(4, _server.Node.Metrics.Publications);
    }

    /// <summary>Sends one publish on a kept-alive connection and reads its whole answer; returns the status code.</summary>
    private static async Task<int> PublishOnAsync(System.Net.Sockets.NetworkStream stream, string authorization)
    {
        const string Body = """{"channel":"chat:keys","data":1}""";
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
            $"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {Body.Length}\r\n\r\n{Body}"));
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var text = System.Text.Encoding.ASCII.GetString([.. received]);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                var head = text[..end].Split("\r\n");
                var status = int.Parse(head[0].AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture);
                var lengthLine = head.FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
                if (lengthLine is not null)
                {
                    var length = int.Parse(lengthLine["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                    if (received.Count >= end + 4 + length)
                    {
                        Assert.Equal(end + 4 + length, received.Count); // nothing more: the next answer starts clean
                        return status;
                    }
                }
                else
                {
                    Assert.Contains(head, l => l.Equals("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase));
                    if (text.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal))
                    {
                        return status; // the last chunk: the answer is whole
                    }
                }
            }
            var read = await stream.ReadAsync(buffer, timeout.Token);
            Assert.True(read > 0, "the server closed the kept-alive connection");
            received.AddRange(buffer.AsSpan(0, read));
        }
    }

    [Fact]
    public async Task Publish_ReachesWebSocketSubscribers_AndHistoryReadsIt()
    {
        await using var client = await _server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"news"}""");
        using var response = await _server.Api.PostAsync("/api/publish", new StringContent("""{"channel":"news","data":{"title":"hi"}}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var published = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(1UL, published.RootElement.GetProperty("offset").GetUInt64());
        var epoch = published.RootElement.GetProperty("epoch").GetString();

        var push = await client.NextPushAsync();
        Assert.Equal("hi", push.GetProperty("push").GetProperty("pub").GetProperty("data").GetProperty("title").GetString());

        using var history = JsonDocument.Parse(await _server.Api.GetStringAsync($"/api/channels/news/history?offset=0&epoch={epoch}&limit=10"));
        Assert.Equal(epoch, history.RootElement.GetProperty("epoch").GetString());
        Assert.Single(history.RootElement.GetProperty("publications").EnumerateArray());
    }

    [Theory]
    [InlineData("{", "bad_request")]
    [InlineData("""{"channel":"news"}""", "bad_request")]
    [InlineData("""{"channel":"bad name","data":1}""", "invalid_channel")]
    [InlineData("""{"channel":"unknown:x","data":1}""", "invalid_channel")]
    [InlineData("""{"channel":5,"data":1}""", "bad_request")]
    public async Task Publish_BadBody_Is400WithCode(string body, string code)
    {
        using var response = await _server.Api.PostAsync("/api/publish", new StringContent(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(code, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Publish_HugeBody_Is413()
    {
        using var response = await _server.Api.PostAsync("/api/publish", new StringContent($$"""{"channel":"news","data":"{{new string('x', 200_000)}}"}"""));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Theory]
    [InlineData("limit=0")]
    [InlineData("limit=abc")]
    [InlineData("offset=-1")]
    [InlineData("offset=99")]
    public async Task History_BadQuery_Is400(string query)
    {
        using var response = await _server.Api.GetAsync($"/api/channels/chat:q/history?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task History_OtherEpoch_Is409()
    {
        using var response = await _server.Api.GetAsync("/api/channels/chat:q/history?offset=0&epoch=zzz");
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Contains("epoch_mismatch", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Presence_ListsSubscribers_And404WhenDisabled()
    {
        await using var client = await _server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"chat:p"}""");
        using var doc = JsonDocument.Parse(await _server.Api.GetStringAsync("/api/channels/chat:p/presence"));
        Assert.Single(doc.RootElement.GetProperty("presence").EnumerateObject());
        using var disabled = await _server.Api.GetAsync("/api/channels/small:p/presence");
        Assert.Equal(HttpStatusCode.NotFound, disabled.StatusCode);
    }

    [Fact]
    public async Task Stats_CountConnectionsAndPublications()
    {
        await using var client = await _server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"chat:s"}""");
        await _server.PublishAsync("chat:s", "1");
        await client.NextPushAsync();
        // The push can reach the client before the fan-out worker counts the delivery (after its loop over subscribers).
        await Wait.UntilAsync(() => _server.Node.Metrics.Deliveries == 1, TimeSpan.FromSeconds(10), "the delivery is counted");
        using var doc = JsonDocument.Parse(await _server.Api.GetStringAsync("/api/stats"));
        Assert.Equal(1, doc.RootElement.GetProperty("connections").GetProperty("websocket").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("publications").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("deliveries").GetInt32());
        Assert.Equal(0, doc.RootElement.GetProperty("dispatchBacklog").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("channels").GetInt32());
    }

    [Fact]
    public async Task Healthz_IsOkWithoutKey()
    {
        using var response = await _server.Http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        // The memory broker has no health check: {"status":"ok","checks":{}}, the shape /healthz always had, extended.
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("ok", doc.RootElement.GetProperty("status").GetString());
        Assert.Empty(doc.RootElement.GetProperty("checks").EnumerateObject());
    }

    [Fact]
    public async Task PlainGetOnWs_Is426()
    {
        using var response = await _server.Http.GetAsync("/ws");
        Assert.Equal((HttpStatusCode)426, response.StatusCode);
    }
}
