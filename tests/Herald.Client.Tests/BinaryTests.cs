using System.Text.Json;
using Herald.Client.Tests.Infrastructure;
using Herald.Protocol;

namespace Herald.Client.Tests;

/// <summary>
/// Binary publications through the .NET client: published and received unchanged over every transport and both
/// WebSocket protocols, beside JSON ones, in live delivery, history and recovery after a reconnect.
/// </summary>
public sealed class BinaryTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public static TheoryData<HeraldTransport, HeraldProtocol> Combinations => new()
    {
        { HeraldTransport.WebSocket, HeraldProtocol.Json },
        { HeraldTransport.WebSocket, HeraldProtocol.MsgPack },
        { HeraldTransport.LongPoll, HeraldProtocol.Json },
        { HeraldTransport.ShortPoll, HeraldProtocol.MsgPack }, // polling speaks JSON whatever the option says
    };

    private static byte[] AllByteValues() => Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();

    [Theory]
    [MemberData(nameof(Combinations))]
    public async Task BytesAndJson_RoundTripUnchanged_LiveAndInHistory(HeraldTransport transport, HeraldProtocol protocol)
    {
        await using var server = await TestServer.StartAsync(o => o.MaxMessageBytes = 8192);
        await using var client = new HeraldClient(Clients.Options(server, transport) with { Protocol = protocol });
        await client.ConnectAsync();
        var channel = $"chat:bin-{transport}-{protocol}";
        var subscription = await client.SubscribeAsync(channel);
        var collector = new Collector(subscription);

        var all = AllByteValues();
        var large = Enumerable.Range(0, 6000).Select(i => (byte)(i * 31)).ToArray();
        Assert.Equal(1UL, (await client.PublishAsync(channel, all)).Offset);
        await client.PublishAsync(channel, ReadOnlyMemory<byte>.Empty);
        await client.PublishAsync(channel, Clients.Json("""{"n":3}"""));
        await server.PublishBytesAsync(channel, large);

        await collector.WaitForAsync(4, Timeout);
        AssertPublications(collector.Received, all, large);

        var history = await client.HistoryAsync(channel);
        AssertPublications(history.Publications, all, large);
        Assert.NotNull(history.Publications[0].Info);
    }

    [Theory]
    [InlineData(HeraldProtocol.Json)]
    [InlineData(HeraldProtocol.MsgPack)]
    public async Task BytesMissedWhileDisconnected_AreRecoveredUnchanged(HeraldProtocol protocol)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket) with { Protocol = protocol });
        await client.ConnectAsync();
        const string Channel = "chat:bin-recover";
        var collector = new Collector(await client.SubscribeAsync(Channel));
        await server.PublishBytesAsync(Channel, [1]);
        await collector.WaitForAsync(1, Timeout);

        Assert.NotNull(client.BreakConnection());
        for (byte i = 2; i <= 5; i++)
        {
            await server.PublishBytesAsync(Channel, [i, 0, 255]);
        }
        await collector.WaitForAsync(5, Timeout);
        collector.AssertInOrder();
        for (byte i = 2; i <= 5; i++)
        {
            Assert.Equal(new byte[] { i, 0, 255 }, collector.Received[i - 1].Bytes.ToArray());
        }
    }

    [Fact]
    public async Task MsgPackAndJsonClients_OnOneChannel_SeeTheSamePublications()
    {
        await using var server = await TestServer.StartAsync();
        await using var packed = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket) with { Protocol = HeraldProtocol.MsgPack });
        await using var json = new HeraldClient(Clients.Options(server, HeraldTransport.WebSocket));
        await packed.ConnectAsync();
        await json.ConnectAsync();
        const string Channel = "chat:bin-mixed";
        var packedCollector = new Collector(await packed.SubscribeAsync(Channel));
        var jsonCollector = new Collector(await json.SubscribeAsync(Channel));

        await packed.PublishAsync(Channel, new byte[] { 0xca, 0xfe });
        await json.PublishAsync(Channel, new byte[] { 0xbe, 0xef });
        await packed.PublishAsync(Channel, Clients.Json("""{"text":"hé","list":[1,2.5,null,true]}"""));

        await packedCollector.WaitForAsync(3, Timeout);
        await jsonCollector.WaitForAsync(3, Timeout);
        foreach (var received in new[] { packedCollector.Received, jsonCollector.Received })
        {
            Assert.Equal(new byte[] { 0xca, 0xfe }, received[0].Bytes.ToArray());
            Assert.Equal(new byte[] { 0xbe, 0xef }, received[1].Bytes.ToArray());
            Assert.Equal(PayloadKind.Json, received[2].Kind);
            Assert.Equal("hé", received[2].Data.GetProperty("text").GetString());
            Assert.Equal("[1,2.5,null,true]", received[2].Data.GetProperty("list").GetRawText());
        }
    }

    [Fact]
    public async Task BytesOverTheLimit_AreRefusedWithPayloadTooLarge()
    {
        await using var server = await TestServer.StartAsync(o => o.MaxMessageBytes = 1024);
        await using var client = new HeraldClient(Clients.Options(server, HeraldTransport.LongPoll));
        await client.ConnectAsync();
        var refused = await Assert.ThrowsAsync<HeraldException>(async () => await client.PublishAsync("chat:bin-limit", new byte[1100]));
        Assert.Equal(ErrorCodes.PayloadTooLarge, refused.Code);
    }

    private static void AssertPublications(IReadOnlyList<ClientPublication> received, byte[] all, byte[] large)
    {
        Assert.Equal([1UL, 2, 3, 4], received.Select(p => p.Offset));
        Assert.Equal(PayloadKind.Binary, received[0].Kind);
        Assert.Equal(all, received[0].Bytes.ToArray());
        Assert.Equal(JsonValueKind.Undefined, received[0].Data.ValueKind);
        Assert.Equal(PayloadKind.Binary, received[1].Kind);
        Assert.True(received[1].Bytes.IsEmpty);
        Assert.Equal(PayloadKind.Json, received[2].Kind);
        Assert.Equal(3, received[2].Data.GetProperty("n").GetInt32());
        Assert.Equal("""{"n":3}""", System.Text.Encoding.UTF8.GetString(received[2].Bytes.Span));
        Assert.Equal(large, received[3].Bytes.ToArray());
    }
}
