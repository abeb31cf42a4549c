using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Herald.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary><c>GET /sse</c> on a real Kestrel: the stream's shape, resumption, limits, slow consumers, heartbeats and shutdown.</summary>
public sealed class SseTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static async Task<string> EpochOfAsync(TestServer server, string channel)
    {
        using var doc = JsonDocument.Parse(await server.Http.GetStringAsync($"/poll?channel={channel}"));
        return doc.RootElement.GetProperty("channels").GetProperty(channel).GetProperty("epoch").GetString()!;
    }

    [Fact]
    public async Task Stream_RecoversEachChannelThenPushesLive_WithIdsNamingEveryChannelsPosition()
    {
        await using var server = await TestServer.StartAsync();
        await server.PublishAsync("chat:a", """{"n":1}""");
        await server.PublishAsync("chat:a", """{"n":2}""");
        var epochA = await EpochOfAsync(server, "chat:a");
        var epochB = await EpochOfAsync(server, "chat:b");

        var (response, stream) = await SseStream.OpenAsync(server.Http, $"/sse?channel=chat:a&channel=chat:b&offset=0&offset=&epoch={epochA}&epoch=");
        await using var opened = stream;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.True(response.Headers.CacheControl!.NoCache);
        Assert.Equal("no", response.Headers.GetValues("X-Accel-Buffering").Single());

        var connected = await stream!.NextAsync();
        Assert.Null(connected.Id);
        Assert.False(string.IsNullOrEmpty(connected.Json.GetProperty("connected").GetProperty("client").GetString()));

        var a = await stream.NextAsync();
        var subscribedA = a.Json.GetProperty("subscribed");
        Assert.Equal("chat:a", subscribedA.GetProperty("channel").GetString());
        Assert.True(subscribedA.GetProperty("recovered").GetBoolean());
        Assert.Equal([1UL, 2UL], subscribedA.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        Assert.Equal($"2.{epochA},", a.Id); // chat:b has no position yet

        var b = await stream.NextAsync();
        Assert.Equal("chat:b", b.Json.GetProperty("subscribed").GetProperty("channel").GetString());
        Assert.False(b.Json.GetProperty("subscribed").TryGetProperty("recovered", out _)); // no cursor, so nothing to recover
        Assert.Equal($"2.{epochA},0.{epochB}", b.Id);

        await server.PublishAsync("chat:b", """{"text":"hi"}""");
        var push = await stream.NextAsync();
        Assert.Equal("""{"push":{"channel":"chat:b","pub":{"offset":1,"data":{"text":"hi"}}}}""", push.Data);
        Assert.Equal($"2.{epochA},1.{epochB}", push.Id);
        await server.PublishAsync("chat:a", """{"n":3}""");
        Assert.Equal($"3.{epochA},1.{epochB}", (await stream.NextAsync()).Id);
    }

    [Fact]
    public async Task RecoveryLongerThanOnePage_ContinuesAsPushes_EachIdAdvancingByOne()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxHistoryLimit = 10);
        for (var i = 1; i <= 25; i++)
        {
            await server.PublishAsync("chat:long", $"{i}");
        }
        var epoch = await EpochOfAsync(server, "chat:long");
        var (_, stream) = await SseStream.OpenAsync(server.Http, $"/sse?channel=chat:long&offset=0&epoch={epoch}");
        await using var opened = stream;
        await stream!.NextAsync();
        var first = await stream.NextAsync();
        var page = first.Json.GetProperty("subscribed");
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (ulong)i), page.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        Assert.Equal($"10.{epoch}", first.Id);
        for (var offset = 11UL; offset <= 25; offset++)
        {
            var push = await stream.NextAsync();
            Assert.Equal(offset, push.Json.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
            Assert.Equal($"{offset}.{epoch}", push.Id);
        }
    }

    [Fact]
    public async Task Curl_KilledAndResumedWithLastEventId_GetsExactlyWhatItMissed()
    {
        await using var server = await TestServer.StartAsync();
        var url = $"{server.BaseUri}sse?channel=chat:curl&channel=news";
        string lastId;
        await using (var events = StartCurl(url))
        {
            await events.NextAsync(); // connected
            await events.NextAsync(); // subscribed chat:curl
            await events.NextAsync(); // subscribed news
            await server.PublishAsync("chat:curl", """{"n":1}""");
            await server.PublishAsync("news", """{"n":1}""");
            await events.NextAsync();
            lastId = (await events.NextAsync()).Id!;
            Assert.NotNull(lastId);
        } // curl is killed by its own PID here
        await Wait.UntilAsync(() => server.Node.Metrics.SseConnections == 0, Timeout, "the server noticed curl went away");
        await server.PublishAsync("chat:curl", """{"n":2}""");
        await server.PublishAsync("chat:curl", """{"n":3}""");
        await server.PublishAsync("news", """{"n":2}""");

        await using var resumed = StartCurl(url, $"Last-Event-ID: {lastId}");
        await resumed.NextAsync();
        var curl = (await resumed.NextAsync()).Json.GetProperty("subscribed");
        Assert.True(curl.GetProperty("recovered").GetBoolean());
        Assert.Equal([2UL, 3UL], curl.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        var news = (await resumed.NextAsync()).Json.GetProperty("subscribed");
        Assert.Equal([2UL], news.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        await server.PublishAsync("news", """{"n":3}""");
        Assert.Equal(3UL, (await resumed.NextAsync()).Json.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    /// <summary>curl as a third-party SSE client; disposing the stream kills curl by its PID (so a failing test never waits on it).</summary>
    private static SseStream StartCurl(string url, string? header = null)
    {
        var start = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "-sN", "--no-buffer", url })
        {
            start.ArgumentList.Add(arg);
        }
        if (header is not null)
        {
            start.ArgumentList.Add("-H");
            start.ArgumentList.Add(header);
        }
        var process = Process.Start(start)!;
        return new SseStream(process.StandardOutput.BaseStream, new Killer(process));
    }

    private sealed class Killer(Process process) : IDisposable
    {
        public void Dispose()
        {
            process.Kill();
            process.WaitForExit();
            process.Dispose();
        }
    }

    [Fact]
    public async Task ResumingFromAnEpochThatIsGone_SaysRecoveredFalse()
    {
        await using var server = await TestServer.StartAsync();
        await server.PublishAsync("chat:gone", """{"n":1}""");
        var (_, stream) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:gone", r => r.Headers.Add("Last-Event-ID", "7.deadbeef"));
        await using var opened = stream;
        await stream!.NextAsync();
        var subscribed = (await stream.NextAsync()).Json.GetProperty("subscribed");
        Assert.False(subscribed.GetProperty("recovered").GetBoolean());
        Assert.Equal(1UL, subscribed.GetProperty("offset").GetUInt64());
    }

    public static TheoryData<string, string, string> BadRequests() => new()
    {
        { "/sse", "", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a", "garbage", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a", "1.abc,2.abc", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a", "-1.abc", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a", "1.", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a", "1." + new string('e', 65), ErrorCodes.BadRequest },
        { "/sse?channel=chat:a&channel=chat:b", "1.abc", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a&offset=1", "", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a&offset=1&epoch=", "", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a&offset=x&epoch=e", "", ErrorCodes.BadRequest },
        { "/sse?channel=chat:a&channel=chat:a", "", ErrorCodes.AlreadySubscribed },
        { "/sse?channel=nope:a", "", ErrorCodes.InvalidChannel },
        { "/sse?channel=chat:a&client=no%20spaces", "", ErrorCodes.BadRequest },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadQueryOrLastEventId_Is400WithACode_AndOpensNoStream(string path, string lastEventId, string code)
    {
        await using var server = await TestServer.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (lastEventId.Length > 0)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }
        using var response = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(code, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(0, server.Node.Metrics.SseConnections);
        Assert.Equal(0, server.Node.ActiveChannels);
    }

    [Fact]
    public async Task MoreChannelsThanASubscriptionLimit_IsTooManySubscriptions()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxSubscriptionsPerConnection = 2);
        using var response = await server.Http.GetAsync("/sse?channel=chat:a&channel=chat:b&channel=chat:c");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(ErrorCodes.TooManySubscriptions, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutToken_WhenAnonymousIsOff_Is401_AndTheTokenParameterOrHeaderIsAccepted()
    {
        const string Secret = "a-test-secret-that-is-long-enough-for-hs256";
        await using var server = await TestServer.StartAsync(o =>
        {
            o.AllowAnonymous = false;
            o.Token.Secret = Secret;
        });
        using (var refused = await server.Http.GetAsync("/sse?channel=chat:a"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains(ErrorCodes.Unauthorized, await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        using (var bad = await server.Http.GetAsync("/sse?channel=chat:a&token=not-a-jwt"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, bad.StatusCode);
        }
        var token = new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler().CreateToken(new Microsoft.IdentityModel.Tokens.SecurityTokenDescriptor
        {
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            Expires = DateTime.UtcNow.AddMinutes(5),
            SigningCredentials = new(new Microsoft.IdentityModel.Tokens.SymmetricSecurityKey(System.Text.Encoding.UTF8.GetBytes(Secret)), Microsoft.IdentityModel.Tokens.SecurityAlgorithms.HmacSha256),
        });
        var (_, byQuery) = await SseStream.OpenAsync(server.Http, $"/sse?channel=chat:a&token={token}");
        await using (byQuery)
        {
            Assert.Equal("alice", (await byQuery!.NextAsync()).Json.GetProperty("connected").GetProperty("user").GetString());
        }
        var (_, byHeader) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:a", r => r.Headers.Authorization = new("Bearer", token));
        await using (byHeader)
        {
            Assert.Equal("alice", (await byHeader!.NextAsync()).Json.GetProperty("connected").GetProperty("user").GetString());
        }
    }

    [Fact]
    public async Task ChannelTheUserMayNotRead_Is403()
    {
        const string Secret = "a-test-secret-that-is-long-enough-for-hs256";
        await using var server = await TestServer.StartAsync(o =>
        {
            o.Token.Secret = Secret;
            o.Namespaces["private"] = new NamespaceOptions { HistorySize = 10, RequireGrant = true };
        });
        using var response = await server.Http.GetAsync("/sse?channel=chat:a&channel=private:x");
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains(ErrorCodes.PermissionDenied, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(0, server.Node.ActiveChannels);
    }

    [Fact]
    public async Task WrongOrigin_Is403ForbiddenOrigin_AndAnAllowedOneGetsCorsHeaders()
    {
        await using var server = await TestServer.StartAsync(o => o.AllowedOrigins.Add("https://good.example"));
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/sse?channel=chat:a"))
        {
            request.Headers.Add("Origin", "https://evil.example");
            using var response = await server.Http.SendAsync(request);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Contains(ErrorCodes.ForbiddenOrigin, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        var (ok, stream) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:a", r => r.Headers.Add("Origin", "https://good.example"));
        await using var opened = stream;
        Assert.Equal("https://good.example", ok.Headers.GetValues("Access-Control-Allow-Origin").Single());
    }

    [Fact]
    public async Task StreamsCountAgainstTheConnectionLimitPerIp_AndInStats()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxConnectionsPerIp = 1);
        var (_, first) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:a");
        await using (first)
        {
            await first!.NextAsync();
            using var stats = JsonDocument.Parse(await server.Api.GetStringAsync("/api/stats"));
            Assert.Equal(1, stats.RootElement.GetProperty("connections").GetProperty("sse").GetInt32());
            Assert.Contains("herald_connections{transport=\"sse\"} 1", await server.Http.GetStringAsync("/metrics"), StringComparison.Ordinal);
            using var second = await server.Http.GetAsync("/sse?channel=chat:a");
            Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
            Assert.Contains(ErrorCodes.RateLimited, await second.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        await Wait.UntilAsync(() => server.Node.Metrics.SseConnections == 0, Timeout, "the stream is counted out");
        var (_, third) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:a");
        await using var __ = third;
        Assert.NotNull(third);
    }

    [Fact]
    public async Task SseSubscriber_IsPresent_LikeAWebSocketSubscriber()
    {
        await using var server = await TestServer.StartAsync();
        var (_, stream) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:room&info=%7B%22name%22%3A%22Ann%22%7D");
        await using (stream)
        {
            var client = (await stream!.NextAsync()).Json.GetProperty("connected").GetProperty("client").GetString()!;
            await stream.NextAsync();
            using var presence = JsonDocument.Parse(await server.Api.GetStringAsync("/api/channels/chat:room/presence"));
            var entry = presence.RootElement.GetProperty("presence").GetProperty(client);
            Assert.Equal("Ann", entry.GetProperty("info").GetProperty("name").GetString());
        }
        await Wait.UntilAsync(() => server.Node.Metrics.SseConnections == 0, Timeout, "the stream ended");
        using var after = JsonDocument.Parse(await server.Api.GetStringAsync("/api/channels/chat:room/presence"));
        Assert.Empty(after.RootElement.GetProperty("presence").EnumerateObject());
    }

    [Fact]
    public async Task IdleStream_GetsHeartbeatComments_AtTheKeepAliveInterval()
    {
        await using var server = await TestServer.StartAsync(o => o.KeepAliveInterval = TimeSpan.FromMilliseconds(200));
        var (_, stream) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:idle");
        await using var opened = stream;
        await stream!.NextAsync();
        await stream.NextAsync();
        await Wait.UntilAsync(() => stream.Comments >= 3, Timeout, "three heartbeats");
        await server.PublishAsync("chat:idle", "1");
        var push = await stream.NextAsync();
        Assert.True(push.CommentsBefore >= 3);
        Assert.Equal(1UL, push.Json.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task BusyStream_GetsNoHeartbeat_WhileEventsKeepItAlive()
    {
        // Events every 50 ms against a 2 s interval: a stream that wrote since it was last due gets no comment. (A
        // comment here would need the publisher to stall for a whole interval.)
        await using var server = await TestServer.StartAsync(o => o.KeepAliveInterval = TimeSpan.FromSeconds(2));
        var (_, stream) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:busy");
        await using var opened = stream;
        await stream!.NextAsync();
        await stream.NextAsync();
        var started = DateTime.UtcNow;
        ulong published = 0;
        while (DateTime.UtcNow - started < TimeSpan.FromSeconds(5))
        {
            published = await server.PublishAsync("chat:busy", $"{published + 1}");
            var push = await stream.NextAsync();
            Assert.Equal(published, push.Json.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
            await Task.Delay(50);
        }
        Assert.Equal(0, stream.Comments);

        // Idle again, it gets one within the next two intervals.
        await Wait.UntilAsync(() => stream.Comments >= 1, Timeout, "a heartbeat once idle");
    }

    [Fact]
    public async Task Shutdown_EndsTheStreamWithACloseEvent1001()
    {
        var server = await TestServer.StartAsync();
        try
        {
            var (_, stream) = await SseStream.OpenAsync(server.Http, "/sse?channel=chat:a");
            await using var opened = stream;
            await stream!.NextAsync();
            await stream.NextAsync();
            server.Node.BeginShutdown();
            var close = (await stream.NextAsync()).Json.GetProperty("close");
            Assert.Equal(CloseCodes.GoingAway, close.GetProperty("code").GetInt32());
            await Wait.ForAsync(stream.Ended.ContinueWith(_ => true, TaskScheduler.Default), Timeout, "the response ended");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task StreamThatStopsReading_IsEndedAsSlowConsumer_WithACloseEvent4002_WhileAReaderGetsEverything()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxQueuedMessages = 1000;
            o.MaxQueuedBytes = 256 * 1024;
            o.CloseTimeout = TimeSpan.FromSeconds(30);
        });
        const string Channel = "nohist:slow";
        var (_, healthy) = await SseStream.OpenAsync(server.Http, $"/sse?channel={Channel}");
        await using var opened = healthy;
        await healthy!.NextAsync();
        await healthy.NextAsync();

        using var stuck = new System.Net.Sockets.TcpClient();
        stuck.ReceiveBufferSize = 4096;
        await stuck.ConnectAsync("127.0.0.1", server.Port);
        var raw = stuck.GetStream();
        await raw.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"GET /sse?channel={Channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
        await Wait.UntilAsync(() => server.Node.Metrics.SseConnections == 2, Timeout, "both streams are open");

        var ns = server.Node.Options.FindNamespace("nohist")!;
        var data = System.Text.Encoding.UTF8.GetBytes("\"" + new string('x', 2000) + "\"");
        const int Count = 3000; // ~6 MB: far past the stuck stream's queue and the kernel's buffers
        var received = 0;
        var reading = Task.Run(async () =>
        {
            while (received < Count)
            {
                var push = await healthy.NextAsync(TimeSpan.FromSeconds(20));
                Assert.True(push.Json.TryGetProperty("push", out var pushed), $"the healthy stream got {push.Json.GetRawText()} after {received} pushes");
                Assert.Equal((ulong)(received + 1), pushed.GetProperty("pub").GetProperty("offset").GetUInt64());
                received++;
            }
        });
        for (var i = 0; i < Count; i++)
        {
            await server.Node.PublishAsync(Channel, ns, data, null);
            if (i % 50 == 49)
            {
                var sent = i + 1;
                await Wait.UntilAsync(() => Volatile.Read(ref received) >= sent - 50 || reading.IsCompleted, TimeSpan.FromSeconds(20), "the healthy stream keeps up");
            }
        }
        await reading;
        Assert.Equal(1, server.Node.Metrics.SlowConsumerCloses);

        // Now read what the stuck stream was sent: whatever fitted in the buffers, then the close event, then the end.
        var text = new System.Text.StringBuilder();
        var buffer = new byte[65536];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        int n;
        while ((n = await raw.ReadAsync(buffer, deadline.Token)) > 0)
        {
            text.Append(System.Text.Encoding.UTF8.GetString(buffer, 0, n));
            if (text.ToString().EndsWith("0\r\n\r\n", StringComparison.Ordinal))
            {
                break; // the chunked response's last chunk: the server ended the stream
            }
        }
        Assert.Contains("data: {\"close\":{\"code\":4002,", text.ToString(), StringComparison.Ordinal);
        await Wait.UntilAsync(() => server.Node.Metrics.SseConnections == 1, Timeout, "the stuck stream is gone, the healthy one stays");
    }
}
