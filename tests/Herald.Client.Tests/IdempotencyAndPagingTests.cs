using System.Text.Json;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;

namespace Herald.Client.Tests;

/// <summary>The .NET client's <c>idempotencyKey</c> on publish and history paging (<c>reverse</c>, <see cref="HistoryResult.Next"/>), on every transport.</summary>
public sealed class IdempotencyAndPagingTests
{
    public static TheoryData<HeraldTransport> AllTransports => new() { HeraldTransport.WebSocket, HeraldTransport.LongPoll, HeraldTransport.ShortPoll };

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task PublishWithTheSameKey_ReturnsTheFirstPosition_AndPublishesOnce(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        var data = JsonSerializer.SerializeToElement(1, TestJsonContext.Default.Int32);

        var first = await client.PublishAsync("chat:idem", data, idempotencyKey: "retry-me");
        var repeat = await client.PublishAsync("chat:idem", new ChatMessage("again"), TestJsonContext.Default.ChatMessage, idempotencyKey: "retry-me");
        var other = await client.PublishAsync("chat:idem", data, idempotencyKey: "another");

        Assert.Equal(first, repeat);
        Assert.Equal(new StreamPosition(2, first.Epoch), other);
        Assert.Equal([1UL, 2], (await client.HistoryAsync("chat:idem")).Publications.Select(p => p.Offset));
        var refused = await Assert.ThrowsAsync<HeraldException>(async () => await client.PublishAsync("chat:idem", data, idempotencyKey: "not a key"));
        Assert.Equal(ErrorCodes.BadRequest, refused.Code);
    }

    [Theory]
    [MemberData(nameof(AllTransports))]
    public async Task History_WalkedWithNext_ForwardAndReverse_InPagesOf100(HeraldTransport transport)
    {
        await using var server = await TestServer.StartAsync();
        for (var i = 1; i <= 250; i++)
        {
            await server.PublishAsync("chat:pages", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        await using var client = new HeraldClient(Clients.Options(server, transport));
        await client.ConnectAsync();
        var epoch = (await client.HistoryAsync("chat:pages", limit: 1)).Head.Epoch;

        async Task<List<ulong[]>> WalkAsync(StreamPosition? from, bool reverse)
        {
            var pages = new List<ulong[]>();
            var since = from;
            do
            {
                var page = await client.HistoryAsync("chat:pages", since, limit: 100, reverse: reverse);
                pages.Add([.. page.Publications.Select(p => p.Offset)]);
                Assert.All(page.Publications, p => Assert.Equal((int)p.Offset, p.Data.GetInt32()));
                since = page.Next;
                Assert.True(pages.Count <= 3, "the walk did not end after three pages");
            }
            while (since is not null);
            return pages;
        }

        static ulong[] Offsets(int first, int count, int step) => [.. Enumerable.Range(0, count).Select(i => (ulong)(first + i * step))];

        Assert.Equal([Offsets(1, 100, 1), Offsets(101, 100, 1), Offsets(201, 50, 1)], await WalkAsync(new StreamPosition(0, epoch), reverse: false));
        Assert.Equal([Offsets(250, 100, -1), Offsets(150, 100, -1), Offsets(50, 50, -1)], await WalkAsync(null, reverse: true));
        var middle = await client.HistoryAsync("chat:pages", new StreamPosition(200, epoch), limit: 100, reverse: true);
        Assert.Equal(new StreamPosition(100, epoch), middle.Next);
    }
}
