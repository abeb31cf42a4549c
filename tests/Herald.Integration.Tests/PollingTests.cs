using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class PollingTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(o => o.MaxPollChannels = 4);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> GetAsync(string url)
    {
        var response = await _server.Http.GetAsync(url);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone(), response);
    }

    private async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(string url, string body)
    {
        using var response = await _server.Http.PostAsync(url, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    [Fact]
    public async Task FirstPoll_TellsThePositionWithoutOldPublications()
    {
        await _server.PublishAsync("chat:first", "1");
        await _server.PublishAsync("chat:first", "2");
        var (status, body, _) = await GetAsync("/poll?channel=chat:first");
        Assert.Equal(HttpStatusCode.OK, status);
        var channel = body.GetProperty("channels").GetProperty("chat:first");
        Assert.Equal(2UL, channel.GetProperty("offset").GetUInt64());
        Assert.Empty(channel.GetProperty("publications").EnumerateArray());
        Assert.False(channel.TryGetProperty("recovered", out _));
    }

    [Fact]
    public async Task ShortPoll_ReturnsWhatIsNew_ThenNothing_Then304ForTheSameAnswer()
    {
        var (_, first, _) = await GetAsync("/poll?channel=chat:sp");
        var epoch = first.GetProperty("channels").GetProperty("chat:sp").GetProperty("epoch").GetString();
        await _server.PublishAsync("chat:sp", """{"n":1}""");
        await _server.PublishAsync("chat:sp", """{"n":2}""");

        var (_, body, _) = await GetAsync($"/poll?channel=chat:sp&offset=0&epoch={epoch}");
        var channel = body.GetProperty("channels").GetProperty("chat:sp");
        Assert.True(channel.GetProperty("recovered").GetBoolean());
        Assert.Equal(2UL, channel.GetProperty("offset").GetUInt64());
        Assert.Equal([1, 2], channel.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("data").GetProperty("n").GetInt32()));

        var (status, empty, response) = await GetAsync($"/poll?channel=chat:sp&offset=2&epoch={epoch}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Empty(empty.GetProperty("channels").GetProperty("chat:sp").GetProperty("publications").EnumerateArray());
        Assert.Contains("no-cache", response.Headers.CacheControl!.ToString());
        Assert.True(response.Headers.CacheControl.Private);
        var etag = response.Headers.ETag!;

        using var conditional = new HttpRequestMessage(HttpMethod.Get, $"/poll?channel=chat:sp&offset=2&epoch={epoch}");
        conditional.Headers.IfNoneMatch.Add(etag);
        using var notModified = await _server.Http.SendAsync(conditional);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
        Assert.Equal(1, _server.Node.Metrics.PollsNotModified);

        await _server.PublishAsync("chat:sp", """{"n":3}""");
        using var changed = new HttpRequestMessage(HttpMethod.Get, $"/poll?channel=chat:sp&offset=2&epoch={epoch}");
        changed.Headers.IfNoneMatch.Add(etag);
        using var fresh = await _server.Http.SendAsync(changed);
        Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);
    }

    [Fact]
    public async Task LongPoll_IsHeldUntilAPublication()
    {
        var (_, first, _) = await GetAsync("/poll?channel=chat:lp");
        var epoch = first.GetProperty("channels").GetProperty("chat:lp").GetProperty("epoch").GetString();
        var poll = GetAsync($"/poll?channel=chat:lp&offset=0&epoch={epoch}&wait=20");
        await Wait.UntilAsync(() => _server.Node.ParkedPolls == 1, TimeSpan.FromSeconds(5), "the poll parks");
        Assert.False(poll.IsCompleted);
        await _server.PublishAsync("chat:lp", """{"n":1}""");
        var (status, body, _) = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1UL, body.GetProperty("channels").GetProperty("chat:lp").GetProperty("publications")[0].GetProperty("offset").GetUInt64());
        Assert.Equal(0, _server.Node.ParkedPolls);
    }

    [Fact]
    public async Task LongPollers_OnAChannelNoWebSocketSubscribes_AreWokenByEveryBurstOfRacingPublishers_AndSeeEveryOffsetOnce()
    {
        const string Channel = "chat:lp-race";
        const int Publishers = 3;
        const int PerPublisher = 150;
        const int Total = Publishers * PerPublisher;
        PollFollower[] followers = [new(Channel), new(Channel)];
        foreach (var follower in followers)
        {
            await follower.PollAsync(_server, wait: 0);
        }
        // Between bursts the publishers await both pollers caught up and parked again, so each burst must wake parked
        // polls; only the polls' interest makes the node receive the channel.
        var publishing = RacingPublishers.RunAsync([_server], Channel, Publishers, PerPublisher, burst: 10,
            readyForMore: upTo => followers.All(f => f.Offset >= upTo) && _server.Node.ParkedPolls == followers.Length,
            waitingFor: "both long pollers catch up and park again");
        var following = followers.Select(follower => Task.Run(async () =>
        {
            while (follower.Offset < Total && !publishing.IsFaulted)
            {
                await follower.PollAsync(_server, wait: 5);
                Assert.True(follower.RanOutOfWait == 0, $"long poll #{follower.Polls} was held for its whole 5 s wait (now at offset {follower.Offset}) although the publishers were waiting for it to park");
            }
        })).ToArray();
        var all = Task.WhenAll([.. following, publishing]); // a poller's failure says more than the publishers' wait for it
        await Wait.ForAsync(all.ContinueWith(_ => true, TaskScheduler.Default), TimeSpan.FromSeconds(60), "the publishers and both pollers finish");
        await all;

        foreach (var follower in followers)
        {
            Assert.Equal((ulong)Total, follower.Offset);
            RacingPublishers.AssertEachPublisherInOrder(follower.Data, Publishers, PerPublisher);
        }
        Assert.Equal(0, _server.Node.Metrics.WebSocketConnections);
        Assert.Equal(1, _server.Node.ActiveChannels); // received for the polls alone, kept for the linger
    }

    [Fact]
    public async Task LongPoll_EndsEmptyWhenTheWaitRunsOut()
    {
        var (_, first, _) = await GetAsync("/poll?channel=chat:lpe");
        var epoch = first.GetProperty("channels").GetProperty("chat:lpe").GetProperty("epoch").GetString();
        var (status, body, _) = await GetAsync($"/poll?channel=chat:lpe&offset=0&epoch={epoch}&wait=0.3");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Empty(body.GetProperty("channels").GetProperty("chat:lpe").GetProperty("publications").EnumerateArray());
    }

    [Fact]
    public async Task LongPoll_OnSeveralChannels_WakesOnAnyOfThem()
    {
        var (_, first) = await PostAsync("/poll", """{"channels":{"chat:m1":{},"chat:m2":{}}}""");
        var e1 = first.GetProperty("channels").GetProperty("chat:m1").GetProperty("epoch").GetString();
        var e2 = first.GetProperty("channels").GetProperty("chat:m2").GetProperty("epoch").GetString();
        var poll = PostAsync("/poll", $$$"""{"channels":{"chat:m1":{"offset":0,"epoch":"{{{e1}}}"},"chat:m2":{"offset":0,"epoch":"{{{e2}}}"}},"wait":20}""");
        await Wait.UntilAsync(() => _server.Node.ParkedPolls == 1, TimeSpan.FromSeconds(5), "the poll parks");
        await _server.PublishAsync("chat:m2", "7");
        var (status, body) = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Empty(body.GetProperty("channels").GetProperty("chat:m1").GetProperty("publications").EnumerateArray());
        Assert.Equal(7, body.GetProperty("channels").GetProperty("chat:m2").GetProperty("publications")[0].GetProperty("data").GetInt32());
    }

    [Fact]
    public async Task AbortedLongPoll_IsFreedAtOnce()
    {
        var (_, first, _) = await GetAsync("/poll?channel=chat:abort");
        var epoch = first.GetProperty("channels").GetProperty("chat:abort").GetProperty("epoch").GetString();
        using var cts = new CancellationTokenSource();
        var poll = _server.Http.GetAsync($"/poll?channel=chat:abort&offset=0&epoch={epoch}&wait=25", cts.Token);
        await Wait.UntilAsync(() => _server.Node.ParkedPolls == 1, TimeSpan.FromSeconds(5), "the poll parks");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => poll);
        await Wait.UntilAsync(() => _server.Node.ParkedPolls == 0, TimeSpan.FromSeconds(5), "the aborted poll is released");
    }

    [Fact]
    public async Task Poll_OutsideTheWindowOrOtherEpoch_IsRecoveredFalse()
    {
        for (var i = 0; i < 9; i++)
        {
            await _server.PublishAsync("small:pw", "{}");
        }
        var (_, first, _) = await GetAsync("/poll?channel=small:pw");
        var epoch = first.GetProperty("channels").GetProperty("small:pw").GetProperty("epoch").GetString();
        var (_, lost, _) = await GetAsync($"/poll?channel=small:pw&offset=1&epoch={epoch}&wait=5");
        var channel = lost.GetProperty("channels").GetProperty("small:pw");
        Assert.False(channel.GetProperty("recovered").GetBoolean());
        Assert.Equal(9UL, channel.GetProperty("offset").GetUInt64());
        var (_, other, _) = await GetAsync("/poll?channel=small:pw&offset=1&epoch=another&wait=5");
        Assert.False(other.GetProperty("channels").GetProperty("small:pw").GetProperty("recovered").GetBoolean());
    }

    [Theory]
    [InlineData("/poll", "invalid_channel")]
    [InlineData("/poll?channel=bad%20name", "invalid_channel")]
    [InlineData("/poll?channel=unknown:x", "invalid_channel")]
    [InlineData("/poll?channel=chat:x&channel=chat:y", "bad_request")]
    [InlineData("/poll?channel=chat:x&offset=-1&epoch=e", "bad_request")]
    [InlineData("/poll?channel=chat:x&offset=abc&epoch=e", "bad_request")]
    [InlineData("/poll?channel=chat:x&offset=1", "bad_request")]
    [InlineData("/poll?channel=chat:x&epoch=e", "bad_request")]
    [InlineData("/poll?channel=chat:x&wait=-1", "bad_request")]
    [InlineData("/poll?channel=chat:x&wait=31", "bad_request")]
    [InlineData("/poll?channel=chat:x&wait=soon", "bad_request")]
    public async Task BadPollQuery_Is400WithCode(string url, string code)
    {
        var (status, body, _) = await GetAsync(url);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(code, body.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task PollBeyondTheHead_IsInvalidPosition()
    {
        var (_, first, _) = await GetAsync("/poll?channel=chat:beyond");
        var epoch = first.GetProperty("channels").GetProperty("chat:beyond").GetProperty("epoch").GetString();
        var (status, body, _) = await GetAsync($"/poll?channel=chat:beyond&offset=5&epoch={epoch}");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_position", body.GetProperty("error").GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("{", "bad_request")]
    [InlineData("""{"channels":{}}""", "bad_request")]
    [InlineData("""{"channels":{"a":{},"b":{},"c":{},"d":{},"e":{}}}""", "bad_request")]
    [InlineData("""{"channels":{"chat:x":{"offset":"1","epoch":"e"}}}""", "bad_request")]
    [InlineData("""{"channels":{"chat:x":{}},"wait":"long"}""", "bad_request")]
    [InlineData("""{"channels":{"chat:x":{}},"wait":99}""", "bad_request")]
    [InlineData("""{"channels":{"no such:x":{}}}""", "invalid_channel")]
    public async Task BadPollBody_Is400WithCode(string body, string code)
    {
        var (status, reply) = await PostAsync("/poll", body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(code, reply.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task OversizedPollBody_Is413()
    {
        var (status, reply) = await PostAsync("/poll", $$$"""{"channels":{"chat:x":{}},"pad":"{{{new string('x', 70_000)}}}"}""");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("payload_too_large", reply.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Cmd_RunsStatelessCommandsWithTheSameRules()
    {
        var (status, published) = await PostAsync("/cmd", """{"id":1,"op":"publish","channel":"chat:cmd","data":{"a":1}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1UL, published.GetProperty("result").GetProperty("offset").GetUInt64());

        var (_, history) = await PostAsync("/cmd", """{"id":2,"op":"history","channel":"chat:cmd"}""");
        Assert.Single(history.GetProperty("result").GetProperty("publications").EnumerateArray());

        var (denied, deniedBody) = await PostAsync("/cmd", """{"id":3,"op":"publish","channel":"locked:x","data":1}""");
        Assert.Equal(HttpStatusCode.Forbidden, denied);
        Assert.Equal("permission_denied", deniedBody.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(3, deniedBody.GetProperty("id").GetInt32());

        var (subscribe, subscribeBody) = await PostAsync("/cmd", """{"id":4,"op":"subscribe","channel":"chat:x"}""");
        Assert.Equal(HttpStatusCode.BadRequest, subscribe);
        Assert.Equal("bad_request", subscribeBody.GetProperty("error").GetProperty("code").GetString());

        var (unknown, unknownBody) = await PostAsync("/cmd", """{"id":5,"op":"fly"}""");
        Assert.Equal(HttpStatusCode.BadRequest, unknown);
        Assert.Equal("unknown_op", unknownBody.GetProperty("error").GetProperty("code").GetString());

        var (presence, _) = await PostAsync("/cmd", """{"id":6,"op":"presence","channel":"small:x"}""");
        Assert.Equal(HttpStatusCode.NotFound, presence);

        var (malformed, malformedBody) = await PostAsync("/cmd", """{"id":7,"op":""");
        Assert.Equal(HttpStatusCode.BadRequest, malformed);
        Assert.Equal("bad_request", malformedBody.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task PollAndCmd_WithoutTokenWhenAnonymousIsOff_Are401()
    {
        await using var server = await TestServer.StartAsync(o => o.AllowAnonymous = false);
        using var poll = await server.Http.GetAsync("/poll?channel=chat:x");
        Assert.Equal(HttpStatusCode.Unauthorized, poll.StatusCode);
        using var cmd = await server.Http.PostAsync("/cmd", new StringContent("""{"op":"ping"}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, cmd.StatusCode);
        Assert.Contains("unauthorized", await cmd.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task CurlPollingInALoop_SeesEveryPublicationOnceInOrder()
    {
        const int Count = 200;
        var (_, first, _) = await GetAsync("/poll?channel=chat:curl");
        var epoch = first.GetProperty("channels").GetProperty("chat:curl").GetProperty("epoch").GetString()!;
        var publishing = Task.Run(async () =>
        {
            for (var i = 1; i <= Count; i++)
            {
                await _server.PublishAsync("chat:curl", $$"""{"n":{{i}}}""");
            }
        });
        var seen = new List<int>();
        ulong offset = 0;
        var polls = 0;
        while (seen.Count < Count && polls < 5000)
        {
            polls++;
            var output = await RunCurlAsync($"{_server.BaseUri}poll?channel=chat:curl&offset={offset}&epoch={epoch}&wait=5");
            var channel = JsonDocument.Parse(output).RootElement.GetProperty("channels").GetProperty("chat:curl");
            Assert.True(channel.GetProperty("recovered").GetBoolean());
            foreach (var pub in channel.GetProperty("publications").EnumerateArray())
            {
                seen.Add(pub.GetProperty("data").GetProperty("n").GetInt32());
                Assert.Equal(offset + 1, pub.GetProperty("offset").GetUInt64());
                offset++;
            }
            Assert.Equal(offset, channel.GetProperty("offset").GetUInt64());
        }
        await publishing;
        Assert.Equal(Enumerable.Range(1, Count), seen);
    }

    private static async Task<string> RunCurlAsync(string url)
    {
        var start = new ProcessStartInfo("curl", ["-sS", "--fail-with-body", "--max-time", "20", url]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var curl = Process.Start(start)!;
        var output = await curl.StandardOutput.ReadToEndAsync();
        var error = await curl.StandardError.ReadToEndAsync();
        await curl.WaitForExitAsync();
        Assert.True(curl.ExitCode == 0, $"curl failed ({curl.ExitCode}): {error} {output}");
        return output;
    }
}
