using System.Text.Json;
using Herald.Brokers;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Integration.Tests;

public sealed class RecoveryTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task SubscribeWithSince_ReturnsExactlyTheMissedPublications()
    {
        await using var client = await _server.ConnectAsync();
        var first = await client.CommandAsync("""{"op":"subscribe","channel":"chat:rec"}""");
        var epoch = first.GetProperty("result").GetProperty("epoch").GetString();
        await client.CommandAsync("""{"op":"unsubscribe","channel":"chat:rec"}""");
        for (var i = 1; i <= 5; i++)
        {
            await _server.PublishAsync("chat:rec", $$$"""{"n":{{{i}}}}""");
        }
        var again = await client.CommandAsync($$$"""{"op":"subscribe","channel":"chat:rec","since":{"offset":2,"epoch":"{{{epoch}}}"}}""");
        var result = again.GetProperty("result");
        Assert.True(result.GetProperty("recovered").GetBoolean());
        Assert.Equal(5UL, result.GetProperty("offset").GetUInt64());
        Assert.Equal([3UL, 4UL, 5UL], result.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        await _server.PublishAsync("chat:rec", "6");
        Assert.Equal(6UL, (await client.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    [Fact]
    public async Task SubscribeWithSince_MissedMoreThanMaxHistoryLimit_ReplyHoldsOnePage_AndTheRestFollowsAsPushesOnceInOrder()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxHistoryLimit = 10);
        await CatchUpScenario.RunAsync(server, server, "chat:catch-up", limit: 10, missed: 95, during: 60);
    }

    [Fact]
    public async Task SubscribeWithSince_CatchingUpFarMoreThanTheQueueHolds_IsNotClosedAsSlow()
    {
        // 400 missed pushes through a queue of 40: catching up waits for the writer (OutboundQueue.WaitForRoomAsync)
        // rather than tripping the slow-consumer limit (4002).
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxHistoryLimit = 25;
            o.MaxQueuedMessages = 40;
        });
        await CatchUpScenario.RunAsync(server, server, "chat:paced", limit: 25, missed: 400, during: 10);
    }

    [Fact]
    public async Task CatchingUp_ReachesTheHead_StopsReadingHistory()
    {
        var broker = new CountingBroker();
        await using var server = await TestServer.StartAsync(o => o.MaxHistoryLimit = 10, configureServices: services => services.AddSingleton<IBroker>(broker));
        // Nothing is published while it catches up, so only reaching the head can end it.
        await CatchUpScenario.RunAsync(server, server, "chat:head", limit: 10, missed: 35, during: 0);
        var reads = broker.Reads;
        await server.PublishAsync("chat:head", "{}");
        await using var probe = await server.ConnectAsync();
        await probe.CommandAsync("""{"op":"ping"}""");
        // Subscribe (1), subscribe with since (1), then pages 11-20, 21-30, 31-35 (3): once at the head it reads no more.
        Assert.Equal(5, reads);
        Assert.Equal(reads, broker.Reads);
    }

    [Fact]
    public async Task CatchingUp_CutShortByTheBroker_ClosesWith4004_AndResubscribingGoesOnFromWhatWasDelivered()
    {
        var broker = new CountingBroker();
        await using var server = await TestServer.StartAsync(o => o.MaxHistoryLimit = 10, configureServices: services => services.AddSingleton<IBroker>(broker));
        await using var client = await server.ConnectAsync();
        var epoch = (await client.CommandAsync("""{"op":"subscribe","channel":"chat:cut"}""")).GetProperty("result").GetProperty("epoch").GetString();
        await client.CommandAsync("""{"op":"unsubscribe","channel":"chat:cut"}""");
        for (var i = 0; i < 35; i++)
        {
            await server.PublishAsync("chat:cut", "{}");
        }
        // The subscribe's own read works; the first read of catching up finds the broker unavailable.
        broker.FailReadsAfter = broker.Reads + 1;
        var reply = (await client.CommandAsync($$$"""{"op":"subscribe","channel":"chat:cut","since":{"offset":0,"epoch":"{{{epoch}}}"}}""")).GetProperty("result");
        Assert.Equal(10UL, reply.GetProperty("offset").GetUInt64());
        Assert.Equal((System.Net.WebSockets.WebSocketCloseStatus)4004, await client.WaitClosedAsync(TimeSpan.FromSeconds(10)));

        broker.FailReadsAfter = int.MaxValue;
        await using var again = await server.ConnectAsync();
        var resumed = (await again.CommandAsync($$$"""{"op":"subscribe","channel":"chat:cut","since":{"offset":10,"epoch":"{{{epoch}}}"}}""")).GetProperty("result");
        Assert.True(resumed.GetProperty("recovered").GetBoolean());
        Assert.Equal(11UL, resumed.GetProperty("publications")[0].GetProperty("offset").GetUInt64());
    }

    [Theory]
    [InlineData("small:gone", 1UL, true)]    // 9 published, window of 5: offsets 2..4 are gone
    [InlineData("nohist:gone", 3UL, true)]   // no history at all
    [InlineData("small:gone2", 1UL, false)]  // another epoch
    public async Task SubscribeWithSince_OutsideWindowOrOtherEpoch_IsRecoveredFalseWithCurrentPosition(string channel, ulong offset, bool sameEpoch)
    {
        for (var i = 0; i < 9; i++)
        {
            await _server.PublishAsync(channel, "{}");
        }
        await using var client = await _server.ConnectAsync();
        var head = await client.CommandAsync($$"""{"op":"history","channel":"{{channel}}","limit":1}""");
        var epoch = sameEpoch ? head.GetProperty("result").GetProperty("epoch").GetString() : "another";
        var reply = await client.CommandAsync($$$"""{"op":"subscribe","channel":"{{{channel}}}","since":{"offset":{{{offset}}},"epoch":"{{{epoch}}}"}}""");
        var result = reply.GetProperty("result");
        Assert.False(result.GetProperty("recovered").GetBoolean());
        Assert.Equal(9UL, result.GetProperty("offset").GetUInt64());
        Assert.Equal(head.GetProperty("result").GetProperty("epoch").GetString(), result.GetProperty("epoch").GetString());
        Assert.Empty(result.GetProperty("publications").EnumerateArray());
    }

    [Fact]
    public async Task SubscribeWithSince_AtHead_IsRecoveredWithNothingMissed()
    {
        await _server.PublishAsync("nohist:head", "{}");
        await using var client = await _server.ConnectAsync();
        var epoch = (await client.CommandAsync("""{"op":"subscribe","channel":"nohist:head"}""")).GetProperty("result").GetProperty("epoch").GetString();
        await client.CommandAsync("""{"op":"unsubscribe","channel":"nohist:head"}""");
        var reply = await client.CommandAsync($$$"""{"op":"subscribe","channel":"nohist:head","since":{"offset":1,"epoch":"{{{epoch}}}"}}""");
        Assert.True(reply.GetProperty("result").GetProperty("recovered").GetBoolean());
    }

    [Fact]
    public async Task SubscribeWithSince_BeyondHead_IsInvalidPosition()
    {
        await using var client = await _server.ConnectAsync();
        var epoch = (await client.CommandAsync("""{"op":"history","channel":"chat:future"}""")).GetProperty("result").GetProperty("epoch").GetString();
        var reply = await client.CommandAsync($$$"""{"op":"subscribe","channel":"chat:future","since":{"offset":7,"epoch":"{{{epoch}}}"}}""");
        Assert.Equal("invalid_position", reply.GetProperty("error").GetProperty("code").GetString());
        // The failed subscribe left nothing behind: subscribing again works.
        Assert.True((await client.CommandAsync("""{"op":"subscribe","channel":"chat:future"}""")).TryGetProperty("result", out _));
    }

    [Fact]
    public async Task ResubscribeWithSince_RacingPublishers_DeliversEveryOffsetOnceInOrder()
    {
        const int Publishers = 4;
        const int PerPublisher = 1500;
        const int Total = Publishers * PerPublisher;
        const string Channel = "chat:race";
        var seen = new List<ulong>(Total);
        var epoch = "";
        ulong last = 0;

        void Take(JsonElement pub)
        {
            var offset = pub.GetProperty("offset").GetUInt64();
            seen.Add(offset);
            last = offset;
        }

        var publisherClients = new List<WsClient>();
        for (var p = 0; p < Publishers; p++)
        {
            publisherClients.Add(await _server.ConnectAsync());
        }
        var subscriber = await _server.ConnectAsync();
        epoch = (await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result").GetProperty("epoch").GetString()!;

        using var stop = new CancellationTokenSource();
        var publishing = publisherClients.Select((client, p) => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                var reply = await client.CommandAsync($$$$"""{"op":"publish","channel":"{{{{Channel}}}}","data":{"p":{{{{p}}}},"i":{{{{i}}}}}}""");
                Assert.True(reply.TryGetProperty("result", out _), reply.ToString());
            }
        })).ToArray();

        // Drop and come back several times mid-stream, each time on a new connection, recovering from the last offset seen.
        var drops = 0;
        while (last < Total)
        {
            var target = Math.Min((ulong)Total, last + 700);
            while (last < target)
            {
                Take((await subscriber.NextPushAsync(TimeSpan.FromSeconds(20))).GetProperty("push").GetProperty("pub"));
            }
            if (last >= Total)
            {
                break;
            }
            subscriber.Socket.Abort();
            await subscriber.DisposeAsync();
            drops++;
            subscriber = await _server.ConnectAsync();
            var reply = await subscriber.CommandAsync($$$"""{"op":"subscribe","channel":"{{{Channel}}}","since":{"offset":{{{last}}},"epoch":"{{{epoch}}}"}}""");
            var result = reply.GetProperty("result");
            Assert.True(result.GetProperty("recovered").GetBoolean(), reply.ToString());
            foreach (var pub in result.GetProperty("publications").EnumerateArray())
            {
                Take(pub);
            }
        }
        await Task.WhenAll(publishing);
        await subscriber.DisposeAsync();
        foreach (var client in publisherClients)
        {
            await client.DisposeAsync();
        }

        Assert.True(drops >= 3, $"only {drops} drops happened");
        Assert.Equal(Enumerable.Range(1, Total).Select(i => (ulong)i), seen);
    }

    /// <summary>A memory broker that counts history reads, and can fail them as an unreachable backend does.</summary>
    private sealed class CountingBroker : IBroker
    {
        private readonly MemoryBroker _inner = new();
        private int _reads;

        public int Reads => Volatile.Read(ref _reads);

        /// <summary>Reads past this many fail with <see cref="BrokerUnavailableException"/>.</summary>
        public volatile int FailReadsAfter = int.MaxValue;

        public ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default) => _inner.StartAsync(handler, cancellationToken);

        public ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
            _inner.PublishAsync(channel, data, info, history, kind, cancellationToken);

        public ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey idempotency, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
            _inner.PublishAsync(channel, data, info, history, idempotency, kind, cancellationToken);

        public ValueTask<HistoryResult> ReadHistoryBackwardAsync(string channel, ulong? beforeOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
            _inner.ReadHistoryBackwardAsync(channel, beforeOffset, limit, history, cancellationToken);

        public ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
            Interlocked.Increment(ref _reads) > FailReadsAfter
                ? throw new BrokerUnavailableException()
                : _inner.ReadHistoryAsync(channel, afterOffset, limit, history, cancellationToken);

        public ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default) => _inner.SubscribeAsync(channel, cancellationToken);

        public ValueTask SendControlAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default) => _inner.SendControlAsync(message, cancellationToken);

        public ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default) => _inner.UnsubscribeAsync(channel, cancellationToken);

        public ValueTask DisposeAsync() => _inner.DisposeAsync();
    }
}
