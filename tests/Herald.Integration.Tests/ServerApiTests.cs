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
