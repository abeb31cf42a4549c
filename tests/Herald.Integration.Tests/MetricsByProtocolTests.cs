using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// The series the dashboard charts by transport and protocol (issue 13, item 6): WebSocket connections by subprotocol,
/// pollers, and bytes sent by transport and protocol.
/// </summary>
public sealed class MetricsByProtocolTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Metrics_CountWebSocketsByProtocol_BytesSentByProtocol_AndDistinctPollers()
    {
        const string channel = "chat:bytes";
        await using var server = await TestServer.StartAsync();
        await using var json = await server.ConnectAsync();
        await using var msgPack = await MsgPackWsClient.ConnectAsync(server);
        await json.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""");
        await msgPack.CommandAsync(new Dictionary<string, object?> { ["op"] = "subscribe", ["channel"] = channel });

        var text = await server.Http.GetStringAsync("/metrics");
        Assert.Equal(2, Sample(text, "herald_connections{transport=\"websocket\"}"));
        Assert.Equal(1, Sample(text, "herald_websocket_connections{protocol=\"json\"}"));
        Assert.Equal(1, Sample(text, "herald_websocket_connections{protocol=\"msgpack\"}"));

        // 3,000 bytes published as bytes: raw in a MessagePack bin, 4,000 characters of base64 in herald.json.
        var metrics = server.Node.Metrics;
        long JsonBytes() => metrics.BytesSent(0);
        long MsgPackBytes() => metrics.BytesSent(4);
        await Wait.UntilAsync(() => JsonBytes() > 0 && MsgPackBytes() > 0, Timeout, "the connect and subscribe replies are counted");
        var (jsonBefore, msgPackBefore) = (JsonBytes(), MsgPackBytes());
        using (var body = new ByteArrayContent(new byte[3000]))
        {
            body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            (await server.Api.PostAsync($"/api/publish?channel={channel}", body)).EnsureSuccessStatusCode();
        }
        await json.NextPushAsync();
        await msgPack.NextPubAsync();
        await Wait.UntilAsync(() => JsonBytes() > jsonBefore && MsgPackBytes() > msgPackBefore, Timeout, "the pushes are counted once sent");
        var jsonPush = JsonBytes() - jsonBefore;
        var msgPackPush = MsgPackBytes() - msgPackBefore;
        Assert.InRange(msgPackPush, 3000, 3200);
        Assert.InRange(jsonPush, 4000, 4200);

        // Short polls: two from client p1, one from p2, one with no id (counted by its address): three pollers. A poll's
        // bytes are its answer body, exactly.
        var answered = 0L;
        foreach (var query in new[] { "&client=p1", "&client=p1", "&client=p2", "" })
        {
            answered += (await server.Http.GetByteArrayAsync($"/poll?channel={channel}{query}")).Length;
        }
        text = await server.Http.GetStringAsync("/metrics");
        Assert.Equal(3, Sample(text, "herald_pollers{transport=\"short_poll\"}"));
        Assert.Equal(0, Sample(text, "herald_pollers{transport=\"long_poll\"}"));
        Assert.Equal(answered, Sample(text, "herald_bytes_sent_total{transport=\"short_poll\",protocol=\"json\"}"));
        Assert.Equal(JsonBytes(), Sample(text, "herald_bytes_sent_total{transport=\"websocket\",protocol=\"json\"}"));
        Assert.Equal(MsgPackBytes(), Sample(text, "herald_bytes_sent_total{transport=\"websocket\",protocol=\"msgpack\"}"));
        Assert.Contains("# TYPE herald_bytes_sent_total counter", text);
        Assert.Contains("# TYPE herald_pollers gauge", text);

        // The msgpack connection closes: it leaves its protocol's gauge.
        await msgPack.DisposeAsync();
        await Wait.UntilAsync(() => metrics.MsgPackWebSocketConnections == 0, Timeout, "the msgpack connection is counted out");
        Assert.Equal(1, metrics.WebSocketConnections);
    }

    private static long Sample(string text, string series)
    {
        var match = Regex.Match(text, "^" + Regex.Escape(series) + " (\\d+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"no sample of {series} in:\n{text}");
        return long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }
}
