using System.Net;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// <c>idempotency_key</c> on <c>publish</c> (WebSocket, <c>/cmd</c>) and <c>POST /api/publish</c>: a repeat within
/// <c>Herald:IdempotencyWindow</c> answers the first position and publishes nothing, on any node and any transport.
/// </summary>
public sealed class IdempotentPublishTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private static async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(HttpClient http, string path, string body)
    {
        using var response = await http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static (ulong Offset, string Epoch) PositionOf(JsonElement result) =>
        (result.GetProperty("offset").GetUInt64(), result.GetProperty("epoch").GetString()!);

    /// <summary>
    /// Publishes a fence without a key and waits for its push: pushes arrive in offset order, so every push the
    /// subscriber will ever get from before the fence is then in hand, with no sleep.
    /// </summary>
    private static async Task<List<ulong>> PushedUntilFenceAsync(TestServer server, WsClient subscriber, string channel)
    {
        var fence = await server.PublishAsync(channel, "\"fence\"");
        var offsets = new List<ulong>();
        while (true)
        {
            var offset = (await subscriber.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64();
            if (offset == fence)
            {
                return offsets;
            }
            offsets.Add(offset);
        }
    }

    [Fact]
    public async Task RepeatedKey_OverWebSocketCmdAndApi_AnswersTheFirstPosition_AndPublishesOnce()
    {
        const string Channel = "chat:idem-transports";
        await using var server = await TestServer.StartAsync();
        await using var subscriber = await server.ConnectAsync();
        await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");
        await using var publisher = await server.ConnectAsync();

        var first = PositionOf((await publisher.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","data":{"n":1},"idempotency_key":"msg-7f3a"}""")).GetProperty("result"));
        Assert.Equal(1UL, first.Offset);
        // The same key again: on the same socket, another socket, /cmd and the server API (one key space per channel).
        Assert.Equal(first, PositionOf((await publisher.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","data":{"n":1},"idempotency_key":"msg-7f3a"}""")).GetProperty("result")));
        Assert.Equal(first, PositionOf((await subscriber.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","data":{"n":"other"},"idempotency_key":"msg-7f3a"}""")).GetProperty("result")));
        var cmd = await PostAsync(server.Http, "/cmd", $$"""{"id":1,"op":"publish","channel":"{{Channel}}","data":{"n":1},"idempotency_key":"msg-7f3a"}""");
        Assert.Equal(HttpStatusCode.OK, cmd.Status);
        Assert.Equal(first, PositionOf(cmd.Body.GetProperty("result")));
        var api = await PostAsync(server.Api, "/api/publish", $$"""{"channel":"{{Channel}}","data":{"n":1},"idempotency_key":"msg-7f3a"}""");
        Assert.Equal(HttpStatusCode.OK, api.Status);
        Assert.Equal(first, PositionOf(api.Body));

        // Another key publishes.
        var second = PositionOf((await publisher.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","data":{"n":2},"idempotency_key":"msg-7f3b"}""")).GetProperty("result"));
        Assert.Equal((2UL, first.Epoch), second);

        Assert.Equal([1UL, 2], await PushedUntilFenceAsync(server, subscriber, Channel));
        using var history = JsonDocument.Parse(await server.Api.GetStringAsync($"/api/channels/{Channel}/history?offset=0"));
        Assert.Equal(["""{"n":1}""", """{"n":2}""", "\"fence\""], history.RootElement.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("data").GetRawText()));
        // Repeats are not counted as publications.
        Assert.Equal(3, server.Node.Metrics.Publications);
    }

    [Fact]
    public async Task RepeatedKey_OnAnotherNode_AnswersTheFirstPosition()
    {
        const string Channel = "chat:idem-nodes";
        await using var cluster = await TestServer.StartClusterAsync(2);
        var (a, b) = (cluster[0], cluster[1]);
        await using var subscriber = await a.ConnectAsync();
        await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");
        await using var onB = await b.ConnectAsync();

        var first = PositionOf((await onB.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","data":1,"idempotency_key":"k1"}""")).GetProperty("result"));
        var api = await PostAsync(a.Api, "/api/publish", $$"""{"channel":"{{Channel}}","data":1,"idempotency_key":"k1"}""");
        Assert.Equal(first, PositionOf(api.Body));
        var cmd = await PostAsync(a.Http, "/cmd", $$"""{"op":"publish","channel":"{{Channel}}","data":1,"idempotency_key":"k1"}""");
        Assert.Equal(first, PositionOf(cmd.Body.GetProperty("result")));

        Assert.Equal([first.Offset], await PushedUntilFenceAsync(b, subscriber, Channel));
    }

    [Fact]
    public async Task ConcurrentRepeatsOfOneKey_OnTwoNodesAndEveryTransport_MakeOnePublication_AndAllGetItsOffset()
    {
        const string Channel = "chat:idem-race";
        const int PerTransport = 8;
        await using var cluster = await TestServer.StartClusterAsync(2);
        await using var subscriber = await cluster[0].ConnectAsync();
        await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");
        var sockets = new List<WsClient>();
        foreach (var node in cluster.Nodes)
        {
            for (var i = 0; i < PerTransport / 2; i++)
            {
                sockets.Add(await node.ConnectAsync());
            }
        }
        try
        {
            var body = $$"""{"channel":"{{Channel}}","data":{"once":true},"idempotency_key":"only-once"}""";
            var command = $$"""{"op":"publish","channel":"{{Channel}}","data":{"once":true},"idempotency_key":"only-once"}""";
            var calls = new List<Task<(ulong, string)>>();
            calls.AddRange(sockets.Select(async s => PositionOf((await s.CommandAsync(command)).GetProperty("result"))));
            for (var i = 0; i < PerTransport; i++)
            {
                var node = cluster[i % 2];
                calls.Add(Task.Run(async () => PositionOf((await PostAsync(node.Api, "/api/publish", body)).Body)));
                calls.Add(Task.Run(async () => PositionOf((await PostAsync(node.Http, "/cmd", command)).Body.GetProperty("result"))));
            }

            var answers = await Task.WhenAll(calls);

            var position = Assert.Single(answers.Distinct());
            Assert.Equal(1UL, position.Item1);
            Assert.Equal([1UL], await PushedUntilFenceAsync(cluster[1], subscriber, Channel));
            // The publication and the fence; no repeat counted.
            Assert.Equal(2, cluster[0].Node.Metrics.Publications + cluster[1].Node.Metrics.Publications);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task RepeatedKey_AfterTheWindow_PublishesAgain()
    {
        const string Channel = "chat:idem-window";
        var window = TimeSpan.FromSeconds(1);
        await using var server = await TestServer.StartAsync(o => o.IdempotencyWindow = window);
        var body = $$"""{"channel":"{{Channel}}","data":1,"idempotency_key":"k"}""";

        Assert.Equal(1UL, (await PostAsync(server.Api, "/api/publish", body)).Body.GetProperty("offset").GetUInt64());
        Assert.Equal(1UL, (await PostAsync(server.Api, "/api/publish", body)).Body.GetProperty("offset").GetUInt64());
        // The window is what is under test: nothing to wait for but time itself.
        await Task.Delay(window + TimeSpan.FromMilliseconds(300));
        Assert.Equal(2UL, (await PostAsync(server.Api, "/api/publish", body)).Body.GetProperty("offset").GetUInt64());
        Assert.Equal(2UL, (await PostAsync(server.Api, "/api/publish", body)).Body.GetProperty("offset").GetUInt64());
    }

    public static TheoryData<string> BadKeys => new()
    {
        "\"\"",
        $"\"{new string('k', 129)}\"",
        "\"has space\"",
        "\"brace{d}\"",
        "\"é\"",
        "42",
    };

    [Theory]
    [MemberData(nameof(BadKeys))]
    public async Task BadKey_IsBadRequest_OnEveryTransport_AndPublishesNothing(string key)
    {
        const string Channel = "chat:idem-bad";
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync();

        var ws = await client.CommandAsync($$"""{"op":"publish","channel":"{{Channel}}","data":1,"idempotency_key":{{key}}}""");
        Assert.Equal("bad_request", ws.GetProperty("error").GetProperty("code").GetString());
        var cmd = await PostAsync(server.Http, "/cmd", $$"""{"op":"publish","channel":"{{Channel}}","data":1,"idempotency_key":{{key}}}""");
        Assert.Equal(HttpStatusCode.BadRequest, cmd.Status);
        Assert.Equal("bad_request", cmd.Body.GetProperty("error").GetProperty("code").GetString());
        var api = await PostAsync(server.Api, "/api/publish", $$"""{"channel":"{{Channel}}","data":1,"idempotency_key":{{key}}}""");
        Assert.Equal(HttpStatusCode.BadRequest, api.Status);
        Assert.Equal("bad_request", api.Body.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(0, server.Node.Metrics.Publications);
    }

    [Fact]
    public async Task LongestKeyOfAllowedCharacters_IsAccepted()
    {
        await using var server = await TestServer.StartAsync();
        var key = ("Az09_-.:+/=" + new string('x', 128))[..128];
        var body = $$"""{"channel":"chat:idem-long","data":1,"idempotency_key":"{{key}}"}""";
        var first = await PostAsync(server.Api, "/api/publish", body);
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal(PositionOf(first.Body), PositionOf((await PostAsync(server.Api, "/api/publish", body)).Body));
    }
}
