using System.Net;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// Walking a long history in pages: <c>history</c> with <c>reverse</c> and each page's <c>next</c>, over the WebSocket,
/// <c>POST /cmd</c> and <c>GET /api/channels/{channel}/history</c>.
/// </summary>
public sealed class HistoryPagingTests : IAsyncLifetime
{
    private const string Channel = "chat:paging";
    private const int Published = 250;
    private TestServer _server = null!;
    private WsClient _client = null!;
    private string _epoch = "";

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        _client = await _server.ConnectAsync();
        for (var i = 1; i <= Published; i++)
        {
            Assert.Equal((ulong)i, await _server.PublishAsync(Channel, $$"""{"n":{{i}}}"""));
        }
        var head = await _client.CommandAsync($$"""{"op":"history","channel":"{{Channel}}","limit":1}""");
        _epoch = head.GetProperty("result").GetProperty("epoch").GetString()!;
    }

    public async Task DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
    }

    public static TheoryData<string> Transports => new() { "ws", "cmd", "api" };

    /// <summary>Reads one page through <paramref name="transport"/>; returns the result object.</summary>
    private async Task<JsonElement> PageAsync(string transport, (ulong Offset, string Epoch)? since, bool reverse, int limit = 100)
    {
        if (transport == "api")
        {
            var query = $"limit={limit}" + (since is { } s ? $"&offset={s.Offset}&epoch={s.Epoch}" : "") + (reverse ? "&reverse=true" : "");
            using var response = await _server.Api.GetAsync($"/api/channels/{Channel}/history?{query}");
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        var command = $$"""{"op":"history","channel":"{{Channel}}","limit":{{limit}}""" +
            (since is { } c ? $$""","since":{"offset":{{c.Offset}},"epoch":"{{c.Epoch}}"}""" : "") +
            (reverse ? ""","reverse":true""" : "") + "}";
        if (transport == "ws")
        {
            return (await _client.CommandAsync(command)).GetProperty("result");
        }
        using var posted = await _server.Http.PostAsync("/cmd", new StringContent(command, Encoding.UTF8, "application/json"));
        var body = await posted.Content.ReadAsStringAsync();
        Assert.True(posted.StatusCode == HttpStatusCode.OK, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("result").Clone();
    }

    private static ulong[] Offsets(JsonElement page) => [.. page.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64())];

    private static ulong[] Range(ulong from, ulong to) =>
        from <= to
            ? [.. Enumerable.Range((int)from, (int)(to - from + 1)).Select(i => (ulong)i)]
            : [.. Enumerable.Range((int)to, (int)(from - to + 1)).Select(i => (ulong)i).Reverse()];

    private static (ulong, string)? NextOf(JsonElement page) =>
        page.TryGetProperty("next", out var next) ? (next.GetProperty("offset").GetUInt64(), next.GetProperty("epoch").GetString()!) : null;

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Forward_From0_WalksEveryPublicationInPagesOf100(string transport)
    {
        var pages = new List<ulong[]>();
        var nexts = new List<(ulong, string)?>();
        (ulong, string)? since = (0, _epoch);
        while (since is not null)
        {
            var page = await PageAsync(transport, since, reverse: false);
            Assert.Equal((ulong)Published, page.GetProperty("offset").GetUInt64());
            Assert.Equal(_epoch, page.GetProperty("epoch").GetString());
            pages.Add(Offsets(page));
            since = NextOf(page);
            nexts.Add(since);
            Assert.True(pages.Count <= 3, "the walk did not end after three pages");
        }

        Assert.Equal([Range(1, 100), Range(101, 200), Range(201, 250)], pages);
        Assert.Equal([(100UL, _epoch), (200UL, _epoch), null], nexts);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Reverse_FromTheNewest_WalksEveryPublicationNewestFirstInPagesOf100(string transport)
    {
        var pages = new List<ulong[]>();
        var nexts = new List<(ulong, string)?>();
        (ulong, string)? since = null;
        do
        {
            var page = await PageAsync(transport, since, reverse: true);
            Assert.Equal((ulong)Published, page.GetProperty("offset").GetUInt64());
            pages.Add(Offsets(page));
            since = NextOf(page);
            nexts.Add(since);
            Assert.True(pages.Count <= 3, "the walk did not end after three pages");
        }
        while (since is not null);

        Assert.Equal([Range(250, 151), Range(150, 51), Range(50, 1)], pages);
        Assert.Equal([(151UL, _epoch), (51UL, _epoch), null], nexts);
        // Each publication's data is its own, newest first.
        var newest = await PageAsync(transport, null, reverse: true, limit: 2);
        Assert.Equal(["""{"n":250}""", """{"n":249}"""], newest.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("data").GetRawText()));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Reverse_BeforeAnOffset_ReturnsTheOlderOnes_AndTheLastPageHasNoNext(string transport)
    {
        var page = await PageAsync(transport, (10, _epoch), reverse: true, limit: 4);
        Assert.Equal([9UL, 8, 7, 6], Offsets(page));
        Assert.Equal((6UL, _epoch), NextOf(page));
        var last = await PageAsync(transport, (3, _epoch), reverse: true, limit: 4);
        Assert.Equal([2UL, 1], Offsets(last));
        Assert.False(last.TryGetProperty("next", out _));
    }

    [Fact]
    public async Task ReplyWithNothingMore_HasNoNextField_AsBefore()
    {
        // A client that knows nothing of paging sees the reply it always saw.
        var reply = await _client.CommandAsync($$"""{"op":"history","channel":"{{Channel}}","limit":3}""");
        Assert.Equal($$$"""{"epoch":"{{{_epoch}}}","offset":250,"publications":[{"offset":248,"data":{"n":248}},{"offset":249,"data":{"n":249}},{"offset":250,"data":{"n":250}}]}""", reply.GetProperty("result").GetRawText());
    }

    [Fact]
    public async Task Reverse_WithAStaleEpoch_IsEpochMismatch_AndAnOffsetPastTheHeadIsInvalidPosition()
    {
        var stale = await _client.CommandAsync($$"""{"op":"history","channel":"{{Channel}}","since":{"offset":10,"epoch":"0000"},"reverse":true}""");
        Assert.Equal("epoch_mismatch", stale.GetProperty("error").GetProperty("code").GetString());
        var past = await _client.CommandAsync($$"""{"op":"history","channel":"{{Channel}}","since":{"offset":251,"epoch":"{{_epoch}}"},"reverse":true}""");
        Assert.Equal("invalid_position", past.GetProperty("error").GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("reverse=yes")]
    [InlineData("reverse=")]
    public async Task Api_BadReverse_Is400BadRequest(string query)
    {
        using var response = await _server.Api.GetAsync($"/api/channels/{Channel}/history?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("\"bad_request\"", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task WebSocket_NonBooleanReverse_IsBadRequest()
    {
        var reply = await _client.CommandAsync($$"""{"op":"history","channel":"{{Channel}}","reverse":"yes"}""");
        Assert.Equal("bad_request", reply.GetProperty("error").GetProperty("code").GetString());
    }
}
