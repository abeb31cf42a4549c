using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// Two Herald nodes in one process on one shared broker (<see cref="TestServer.StartClusterAsync"/>), each a real
/// Kestrel on its own loopback port: what a client sees must not depend on the node it talks to.
/// </summary>
public sealed class MultiNodeTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private static async Task<JsonElement> NextPubAsync(WsClient client, string what)
    {
        try
        {
            return (await client.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub");
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"no push within {Deadline.TotalSeconds} s: {what}");
            throw;
        }
    }

    private static async Task<string> GetStringAsync(HttpClient http, string url)
    {
        using var response = await http.GetAsync(url);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {http.BaseAddress}{url.TrimStart('/')} answered {(int)response.StatusCode}: {text}");
        return text;
    }

    private static async Task<JsonElement> CmdAsync(TestServer node, string body)
    {
        using var response = await node.Http.PostAsync("/cmd", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"/cmd on node {node.Node.NodeId} answered {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static string[] Ids(JsonElement presence) => [.. presence.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal)];

    [Fact]
    public async Task WebSocketSubscriberOnA_ReceivesEveryPublicationMadeOnB_ThroughTheApiAndAWebSocket_InOrderExactlyOnce()
    {
        const string Channel = "chat:mn-fanout";
        const int PerSource = 300;
        await using var cluster = await TestServer.StartClusterAsync(2);
        var (a, b) = (cluster[0], cluster[1]);

        await using var subscriber = await a.ConnectAsync();
        var subscribed = (await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result");
        Assert.Equal(0UL, subscribed.GetProperty("offset").GetUInt64());
        var epoch = subscribed.GetProperty("epoch").GetString();
        await using var wsPublisher = await b.ConnectAsync();

        var api = Task.Run(async () =>
        {
            for (var i = 0; i < PerSource; i++)
            {
                await b.PublishAsync(Channel, $$"""{"src":"api","i":{{i}}}""");
            }
        });
        var ws = Task.Run(async () =>
        {
            for (var i = 0; i < PerSource; i++)
            {
                var reply = await wsPublisher.CommandAsync($$$"""{"op":"publish","channel":"{{{Channel}}}","data":{"src":"ws","i":{{{i}}}}}""");
                Assert.True(reply.TryGetProperty("result", out var result), $"publish over B's WebSocket: {reply}");
                Assert.Equal(epoch, result.GetProperty("epoch").GetString());
            }
        });

        var received = new List<JsonElement>();
        while (received.Count < 2 * PerSource)
        {
            received.Add(await NextPubAsync(subscriber, $"publication {received.Count + 1} of {2 * PerSource} on A"));
        }
        await Task.WhenAll(api, ws);
        // Nothing more may follow the last one: the next push is a publication made after them all.
        var after = await b.PublishAsync(Channel, "\"after\"");
        Assert.Equal(2UL * PerSource + 1, after);
        Assert.Equal(after, (await NextPubAsync(subscriber, "the publication made after all the others")).GetProperty("offset").GetUInt64());

        Assert.Equal(Enumerable.Range(1, 2 * PerSource).Select(i => (ulong)i), received.Select(p => p.GetProperty("offset").GetUInt64()));
        foreach (var source in new[] { "api", "ws" })
        {
            var own = received.Where(p => p.GetProperty("data").GetProperty("src").GetString() == source).ToList();
            Assert.Equal(Enumerable.Range(0, PerSource), own.Select(p => p.GetProperty("data").GetProperty("i").GetInt32()));
        }
        // Client publications carry who published them (a client of B); server API ones carry nothing.
        Assert.All(received.Where(p => p.GetProperty("data").GetProperty("src").GetString() == "ws"),
            p => Assert.StartsWith(b.Node.NodeId + "-", p.GetProperty("info").GetProperty("client").GetString(), StringComparison.Ordinal));
        Assert.All(received.Where(p => p.GetProperty("data").GetProperty("src").GetString() == "api"), p => Assert.False(p.TryGetProperty("info", out _)));
        // B published without receiving: the pushes reached A through the broker, not through B's own fan-out.
        Assert.Equal(0, b.Node.ActiveChannels);
    }

    [Fact]
    public async Task LongPollerAlternatingNodes_OnAChannelNoWebSocketSubscribes_IsWokenEachTime_AndSeesEveryOffsetOnceInOrder()
    {
        const string Channel = "chat:mn-longpoll";
        const int Publishers = 3;
        const int PerPublisher = 200;
        const int Total = Publishers * PerPublisher;
        await using var cluster = await TestServer.StartClusterAsync(2);
        var follower = new PollFollower(Channel);
        await follower.PollAsync(cluster[0], wait: 0);

        // First one publication at a time, each of which alone must wake the poll: parked on A and on B, published
        // through A and through B, at odd and even offsets.
        const int OneByOne = 8;
        var turn = 0;
        for (var i = 0; i < OneByOne; i++)
        {
            var (node, via) = (cluster[turn++ % 2], cluster[i / 2 % 2]);
            var poll = follower.PollAsync(node, wait: 5);
            await Wait.UntilAsync(() => node.Node.ParkedPolls == 1 || poll.IsCompleted, Deadline, $"long poll #{follower.Polls} parks on node {node.Node.NodeId}");
            Assert.Equal((ulong)i + 1, await via.PublishAsync(Channel, $$"""{"one":{{i}}}"""));
            var answer = await poll;
            Assert.True(follower.RanOutOfWait == 0, $"the poll parked on node {node.Node.NodeId} was held for its whole 5 s wait: publication {i + 1}, made through node {via.Node.NodeId}, did not wake it");
            Assert.Equal((ulong)i + 1, Assert.Single(answer.GetProperty("publications").EnumerateArray()).GetProperty("offset").GetUInt64());
        }

        // Then publishers go in bursts, and between bursts each awaits the poller having caught up and parked again (on
        // whichever node its turn took it to), so that every burst must wake a parked poll: half the time through the
        // other node. Within a burst the three race the poller's park-then-read.
        var publishing = RacingPublishers.RunAsync(cluster.Nodes, Channel, Publishers, PerPublisher, burst: 10,
            readyForMore: upTo => follower.Offset >= upTo && cluster.Nodes.Sum(n => n.Node.ParkedPolls) == 1,
            waitingFor: "the alternating long poller catches up and parks again");
        var clock = Stopwatch.StartNew();
        while (follower.Offset < OneByOne + Total && !publishing.IsFaulted && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            var node = cluster[turn++ % 2];
            await follower.PollAsync(node, wait: 5);
            // The publishers wait for the poller to park, so a poll held for its whole wait missed its wake-up.
            Assert.True(follower.RanOutOfWait == 0, $"long poll #{follower.Polls}, on node {node.Node.NodeId}, was held for its whole 5 s wait (now at offset {follower.Offset}) although the publishers were waiting for it to park");
        }
        await publishing;

        Assert.Equal((ulong)(OneByOne + Total), follower.Offset);
        RacingPublishers.AssertEachPublisherInOrder([.. follower.Data.Skip(OneByOne)], Publishers, PerPublisher);
        // Both nodes received the channel for the polls' sake alone, and keep it for the linger (30 s by default).
        Assert.All(cluster.Nodes, n => Assert.Equal(1, n.Node.ActiveChannels));
        Assert.All(cluster.Nodes, n => Assert.Equal(0, n.Node.Metrics.WebSocketConnections));
    }

    [Fact]
    public async Task ShortPollerAlternatingNodes_WhilePublishersRaceThroughBothNodes_SeesEveryOffsetOnceInOrder()
    {
        const string Channel = "chat:mn-shortpoll";
        const int Publishers = 3;
        const int PerPublisher = 150;
        const int Total = Publishers * PerPublisher;
        await using var cluster = await TestServer.StartClusterAsync(2);
        var follower = new PollFollower(Channel);
        await follower.PollAsync(cluster[1], wait: 0);

        var publishing = RacingPublishers.RunAsync(cluster.Nodes, Channel, Publishers, PerPublisher);
        var clock = Stopwatch.StartNew();
        var turn = 0;
        while (follower.Offset < Total && !publishing.IsFaulted && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            await follower.PollAsync(cluster[turn++ % 2], wait: 0);
        }
        await publishing;

        Assert.Equal((ulong)Total, follower.Offset);
        RacingPublishers.AssertEachPublisherInOrder(follower.Data, Publishers, PerPublisher);
    }

    [Fact]
    public async Task SubscriptionBegunOnA_ResumedOnBWithSince_IsRecovered_WithExactlyTheMissedPublicationsThenLiveOnes()
    {
        const string Channel = "chat:mn-recover";
        const int Total = 400;
        const int SeenOnA = 100;
        await using var cluster = await TestServer.StartClusterAsync(2);
        var (a, b) = (cluster[0], cluster[1]);
        var seen = new List<ulong>(Total);

        void Take(JsonElement pub, string where)
        {
            var offset = pub.GetProperty("offset").GetUInt64();
            Assert.True(offset == (ulong)seen.Count + 1, $"{where}: offset {offset} after {seen.Count} (a gap or a duplicate)");
            Assert.Equal((int)offset, pub.GetProperty("data").GetProperty("n").GetInt32());
            seen.Add(offset);
        }

        var onA = await a.ConnectAsync();
        var epoch = (await onA.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("epoch").GetString();
        long published = 0;
        // The second half waits for the resubscribe on B to begin, so that it races the seam between recovered and live.
        var resubscribing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var publishing = Task.Run(async () =>
        {
            for (var n = 1; n <= Total; n++)
            {
                if (n == Total / 2 + 1)
                {
                    await resubscribing.Task.WaitAsync(Deadline);
                }
                Interlocked.Exchange(ref published, (long)await b.PublishAsync(Channel, $$"""{"n":{{n}}}"""));
            }
        });
        while (seen.Count < SeenOnA)
        {
            Take(await NextPubAsync(onA, $"push {seen.Count + 1} on A"), "A");
        }
        await onA.DisposeAsync();
        await Wait.UntilAsync(() => a.Node.ActiveChannels == 0, Deadline, "node A stops receiving the channel once its only subscriber has gone");
        var last = seen[^1];
        await Wait.UntilAsync(() => Interlocked.Read(ref published) > (long)last, Deadline, "a publication is missed while no one is subscribed");

        await using var onB = await b.ConnectAsync();
        resubscribing.SetResult();
        var reply = await onB.CommandAsync($$$"""{"op":"subscribe","channel":"{{{Channel}}}","since":{"offset":{{{last}}},"epoch":"{{{epoch}}}"}}""");
        Assert.True(reply.TryGetProperty("result", out var result), reply.ToString());
        Assert.True(result.GetProperty("recovered").GetBoolean(), reply.ToString());
        Assert.Equal(epoch, result.GetProperty("epoch").GetString());
        var missed = result.GetProperty("publications").EnumerateArray().ToList();
        Assert.NotEmpty(missed);
        foreach (var pub in missed)
        {
            Take(pub, "the recovered publications");
        }
        Assert.Equal(result.GetProperty("offset").GetUInt64(), seen[^1]);
        while (seen.Count < Total)
        {
            Take(await NextPubAsync(onB, $"push {seen.Count + 1} on B"), "B, live");
        }
        await publishing;
        // Live for sure: a publication made after the resubscribe, through the node that has no subscriber now.
        Assert.Equal((ulong)Total + 1, await a.PublishAsync(Channel, $$"""{"n":{{Total + 1}}}"""));
        Take(await NextPubAsync(onB, "the publication made on A after the resubscribe"), "B, live");

        Assert.Equal(Enumerable.Range(1, Total + 1).Select(i => (ulong)i), seen);
    }

    [Fact]
    public async Task ParkedLongPollOnA_IsWokenByAPublicationOnB_AndAKeepsTheChannelOnlyUntilTheLingerPasses()
    {
        const string Channel = "chat:mn-wake";
        var linger = TimeSpan.FromSeconds(1);
        await using var cluster = await TestServer.StartClusterAsync(2, o => o.PollInterestLinger = linger);
        var (a, b) = (cluster[0], cluster[1]);
        var follower = new PollFollower(Channel);
        await follower.PollAsync(a, wait: 0);
        Assert.Equal(0, a.Node.ActiveChannels); // a short poll declares no interest

        var poll = follower.PollAsync(a, wait: 20);
        await Wait.UntilAsync(() => a.Node.ParkedPolls == 1 && a.Node.ActiveChannels == 1, Deadline, "the long poll parks on A, and A receives the channel");
        Assert.Equal(0, b.Node.ActiveChannels);
        var clock = Stopwatch.StartNew();
        Assert.Equal(1UL, await b.PublishAsync(Channel, """{"n":1}"""));
        var answer = await Wait.ForAsync(poll, Deadline, "the poll parked on A answers the publication made on B, well before its 20 s wait");
        Assert.Equal(1UL, answer.GetProperty("publications")[0].GetProperty("offset").GetUInt64());
        Assert.Equal(0, a.Node.ParkedPolls);

        // The poll has ended, but A still receives the channel until the linger passes: a publication on B reaches it.
        // (The linger counts from the poll's end, which came after the clock started, so it holds while the clock < linger.)
        Assert.Equal(2UL, await b.PublishAsync(Channel, """{"n":2}"""));
        var active = a.Node.ActiveChannels;
        var knows = a.Node.TryGetKnownHead(Channel, out var head);
        var checkedAt = clock.Elapsed;
        Assert.True(checkedAt >= linger || (active == 1 && knows && head.Offset == 2),
            $"{checkedAt.TotalMilliseconds:0} ms after the publication that ended the poll, within the {linger.TotalSeconds} s linger, A has {active} channels and knows head {(knows ? head.Offset.ToString() : "none")}");

        // Then the interest is released, and not before the linger.
        await Wait.UntilAsync(() => a.Node.ActiveChannels == 0, linger + Deadline, "A stops receiving the channel after the linger");
        Assert.True(clock.Elapsed >= linger, $"A dropped the channel {clock.Elapsed.TotalMilliseconds:0} ms after the poll's end, before the {linger.TotalSeconds} s linger");
        Assert.False(a.Node.TryGetKnownHead(Channel, out _));
        Assert.Equal(0, b.Node.ActiveChannels);

        // A released channel is taken up again by the next long poll, which a publication on B wakes as before.
        var caughtUp = await follower.PollAsync(a, wait: 0);
        Assert.Equal(2UL, caughtUp.GetProperty("offset").GetUInt64());
        var again = follower.PollAsync(a, wait: 20);
        await Wait.UntilAsync(() => a.Node.ParkedPolls == 1 && a.Node.ActiveChannels == 1, Deadline, "a new long poll parks on A");
        Assert.Equal(3UL, await b.PublishAsync(Channel, """{"n":3}"""));
        var woken = await Wait.ForAsync(again, Deadline, "the new poll on A answers the publication made on B");
        Assert.Equal(3UL, Assert.Single(woken.GetProperty("publications").EnumerateArray()).GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task WebSocketSubscriberOnA_AndPollingClientOnB_AreBothPresent_AsSeenFromEitherNode()
    {
        const string Channel = "chat:mn-presence";
        await using var cluster = await TestServer.StartClusterAsync(2);
        var (a, b) = (cluster[0], cluster[1]);

        var ana = await WsClient.OpenAsync(a.WebSocketUri);
        var connected = await ana.CommandAsync("""{"op":"connect","info":{"name":"Ana"}}""");
        var anaId = connected.GetProperty("result").GetProperty("client").GetString()!;
        Assert.True((await ana.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).TryGetProperty("result", out _));
        await GetStringAsync(b.Http, $"/poll?channel={Channel}&client=pat-1&info={Uri.EscapeDataString("""{"name":"Pat"}""")}");
        string[] expected = [.. new[] { anaId, "pat-1" }.Order(StringComparer.Ordinal)];

        void AssertBoth(JsonElement presence, string seenFrom)
        {
            Assert.True(Ids(presence).SequenceEqual(expected), $"{seenFrom} lists [{string.Join(", ", Ids(presence))}], expected [{string.Join(", ", expected)}]");
            Assert.Equal("Ana", presence.GetProperty(anaId).GetProperty("info").GetProperty("name").GetString());
            Assert.Equal("Pat", presence.GetProperty("pat-1").GetProperty("info").GetProperty("name").GetString());
        }

        await using var onB = await b.ConnectAsync(); // connected to B, subscribed to nothing: not present itself
        foreach (var (node, name) in new[] { (a, "A"), (b, "B") })
        {
            using var api = JsonDocument.Parse(await GetStringAsync(node.Api, $"/api/channels/{Channel}/presence"));
            AssertBoth(api.RootElement.GetProperty("presence"), $"GET /api/channels/…/presence on {name}");
            AssertBoth((await CmdAsync(node, $$"""{"id":1,"op":"presence","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("presence"), $"/cmd presence on {name}");
        }
        AssertBoth((await ana.CommandAsync($$"""{"op":"presence","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("presence"), "the presence command over A's WebSocket");
        AssertBoth((await onB.CommandAsync($$"""{"op":"presence","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("presence"), "the presence command over B's WebSocket");

        // When the WebSocket client on A leaves, B stops listing it too.
        await ana.DisposeAsync();
        await Wait.UntilAsync(() => b.Node.GetPresence(Channel).Select(m => m.Client).SequenceEqual(["pat-1"]), Deadline, "B lists only the polling client once A's subscriber has gone");
        using var left = JsonDocument.Parse(await GetStringAsync(b.Api, $"/api/channels/{Channel}/presence"));
        Assert.Equal(["pat-1"], Ids(left.RootElement.GetProperty("presence")));
    }

    [Fact]
    public async Task History_ReadThroughEitherNode_IsTheSame()
    {
        const string Channel = "chat:mn-history";
        await using var cluster = await TestServer.StartClusterAsync(2);
        var (a, b) = (cluster[0], cluster[1]);
        await using var onB = await b.ConnectAsync();
        for (var i = 0; i < 5; i++)
        {
            await a.PublishAsync(Channel, $$"""{"via":"api-a","i":{{i}}}""");
            Assert.True((await onB.CommandAsync($$$"""{"op":"publish","channel":"{{{Channel}}}","data":{"via":"ws-b","i":{{{i}}}}}""")).TryGetProperty("result", out _));
            await CmdAsync(a, $$$"""{"op":"publish","channel":"{{{Channel}}}","data":{"via":"cmd-a","i":{{{i}}}}}""");
        }

        foreach (var query in new[] { "", "?limit=4", "?offset=6&limit=5" })
        {
            var url = $"/api/channels/{Channel}/history{query}";
            var fromA = await GetStringAsync(a.Api, url);
            var fromB = await GetStringAsync(b.Api, url);
            Assert.True(fromA == fromB, $"{url}\n  A: {fromA}\n  B: {fromB}");
        }
        using var all = JsonDocument.Parse(await GetStringAsync(b.Api, $"/api/channels/{Channel}/history"));
        var publications = all.RootElement.GetProperty("publications").EnumerateArray().ToList();
        Assert.Equal(15UL, all.RootElement.GetProperty("offset").GetUInt64());
        Assert.Equal(Enumerable.Range(1, 15).Select(i => (ulong)i), publications.Select(p => p.GetProperty("offset").GetUInt64()));
        Assert.Equal(Enumerable.Range(0, 15).Select(k => new[] { "api-a", "ws-b", "cmd-a" }[k % 3]), publications.Select(p => p.GetProperty("data").GetProperty("via").GetString()));

        // The history command, over each node's WebSocket and /cmd, answers the same as well.
        await using var onA = await a.ConnectAsync();
        var wsA = (await onA.CommandAsync($$"""{"op":"history","channel":"{{Channel}}"}""")).GetProperty("result").GetRawText();
        var wsB = (await onB.CommandAsync($$"""{"op":"history","channel":"{{Channel}}"}""")).GetProperty("result").GetRawText();
        var cmdB = (await CmdAsync(b, $$"""{"id":1,"op":"history","channel":"{{Channel}}"}""")).GetProperty("result").GetRawText();
        Assert.Equal(wsA, wsB);
        Assert.Equal(wsA, cmdB);
        Assert.Equal(all.RootElement.GetRawText(), wsA);
    }
}
