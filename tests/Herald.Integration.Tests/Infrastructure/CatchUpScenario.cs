using System.Net.WebSockets;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>
/// A subscriber that missed more publications than one read returns (<c>Herald:MaxHistoryLimit</c>) resubscribes with
/// <c>since</c> while a publisher keeps publishing: the reply carries the first page, and every other offset follows as
/// a push, once, in order, with the live ones after. Run on the memory broker (RecoveryTests) and on nodes on Redis
/// (RedisCatchUpTests); the subscriber and the publisher may be on different nodes.
/// </summary>
public static class CatchUpScenario
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);

    /// <param name="subscriberNode">Where the subscriber connects.</param>
    /// <param name="publisherNode">Where publications are made (the server API).</param>
    /// <param name="channel">A channel whose history holds everything published here.</param>
    /// <param name="limit">The nodes' <c>MaxHistoryLimit</c>.</param>
    /// <param name="missed">Publications made while the subscriber is away.</param>
    /// <param name="during">Publications made while it resubscribes and catches up.</param>
    public static async Task RunAsync(TestServer subscriberNode, TestServer publisherNode, string channel, int limit, int missed, int during)
    {
        await using var client = await subscriberNode.ConnectAsync();
        var epoch = (await client.CommandAsync($$"""{"op":"subscribe","channel":"{{channel}}"}""")).GetProperty("result").GetProperty("epoch").GetString();
        await client.CommandAsync($$"""{"op":"unsubscribe","channel":"{{channel}}"}""");
        for (var i = 1; i <= missed; i++)
        {
            await publisherNode.PublishAsync(channel, $$"""{"n":{{i}}}""");
        }

        var publishing = Task.Run(async () =>
        {
            for (var i = missed + 1; i <= missed + during; i++)
            {
                await publisherNode.PublishAsync(channel, $$"""{"n":{{i}}}""");
            }
        });
        var reply = (await client.CommandAsync($$$"""{"op":"subscribe","channel":"{{{channel}}}","since":{"offset":0,"epoch":"{{{epoch}}}"}}""")).GetProperty("result");
        Assert.True(reply.GetProperty("recovered").GetBoolean());
        // One page in the reply, and its offset is the page's last, where the pushes take over.
        var page = reply.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()).ToList();
        Assert.Equal(Enumerable.Range(1, limit).Select(i => (ulong)i), page);
        Assert.Equal((ulong)limit, reply.GetProperty("offset").GetUInt64());

        await publishing.WaitAsync(Deadline);
        var total = missed + during;
        var pushed = new List<ulong>();
        while (pushed.Count < total - limit)
        {
            var push = (await client.NextPushAsync(Deadline)).GetProperty("push");
            Assert.Equal(channel, push.GetProperty("channel").GetString());
            var pub = push.GetProperty("pub");
            pushed.Add(pub.GetProperty("offset").GetUInt64());
            // The data is the publication's own, whether it came from history or live.
            Assert.Equal((int)pushed[^1], pub.GetProperty("data").GetProperty("n").GetInt32());
        }
        Assert.Equal(Enumerable.Range(limit + 1, total - limit).Select(i => (ulong)i), pushed);

        // Nothing repeated after the last one: the next push is the next publication.
        await publisherNode.PublishAsync(channel, $$"""{"n":{{total + 1}}}""");
        Assert.Equal((ulong)total + 1, (await client.NextPushAsync(Deadline)).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
        Assert.Null(client.CloseStatus);
        Assert.NotEqual(WebSocketState.Closed, client.Socket.State);
    }
}
