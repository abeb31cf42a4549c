using System.Runtime.InteropServices;
using System.Text;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Core.Tests;

/// <summary>
/// The fan-out encodes each publication at most once per protocol: every subscriber of one protocol queues the same
/// bytes, and delivering to more subscribers allocates nothing more per subscriber, for herald.json as for herald.msgpack.
/// </summary>
public sealed class FanOutEncodingTests
{
    private sealed class Transport(WireEncoding encoding) : ISessionTransport
    {
        public string Name => "test";

        public WireEncoding Encoding => encoding;

        public void Close(int code, string reason)
        {
        }
    }

    private static async Task<(HeraldNode Node, NamespaceOptions Ns)> StartAsync()
    {
        var options = new HeraldOptions { AllowAnonymous = true, MaxCommandsPerSecond = 1_000_000, MaxQueuedMessages = 1_000_000, MaxQueuedBytes = 1L << 32 };
        var ns = new NamespaceOptions { AllowClientPublish = true, HistorySize = 10 };
        options.Namespaces["chat"] = ns;
        // The fan-out runs inline in the publisher's thread, so that these tests read the queues right after publishing and
        // count the whole fan-out's allocations (the dispatcher's queue included) on this thread.
        var node = new HeraldNode(options, new MemoryBroker()) { ScheduleFanOut = static work => work.Execute() };
        await node.StartAsync();
        return (node, ns);
    }

    private static async Task<ClientSession> SubscribeAsync(HeraldNode node, WireEncoding encoding, string channel)
    {
        var session = new ClientSession(node, new Transport(encoding));
        var frame = encoding == WireEncoding.Json
            ? Encoding.UTF8.GetBytes($$"""{"id":1,"op":"connect"}{{"\n"}}{"id":2,"op":"subscribe","channel":"{{channel}}"}""")
            : MsgPackCodec.FromJson(Encoding.UTF8.GetBytes("""{"id":1,"op":"connect"}""")).Concat(
                MsgPackCodec.FromJson(Encoding.UTF8.GetBytes($$"""{"id":2,"op":"subscribe","channel":"{{channel}}"}"""))).ToArray();
        await session.HandleMessageAsync(frame);
        Drain(session);
        return session;
    }

    private static List<ReadOnlyMemory<byte>> Drain(ClientSession session)
    {
        var messages = new List<ReadOnlyMemory<byte>>();
        while (session.Outbound.Reader.TryRead(out var message))
        {
            messages.Add(message.Bytes);
            session.Outbound.Written(message.Bytes.Length);
        }
        return messages;
    }

    private static byte[] ArrayOf(ReadOnlyMemory<byte> bytes) =>
        MemoryMarshal.TryGetArray(bytes, out var segment) ? segment.Array! : throw new InvalidOperationException("not an array");

    [Theory]
    [InlineData(PayloadKind.Json)]
    [InlineData(PayloadKind.Binary)]
    public async Task MixedSubscribers_EachProtocolSharesOneArray(PayloadKind kind)
    {
        var (node, ns) = await StartAsync();
        await using var _ = node;
        const string Channel = "chat:shared";
        var json = new List<ClientSession>();
        var packed = new List<ClientSession>();
        for (var i = 0; i < 5; i++)
        {
            json.Add(await SubscribeAsync(node, WireEncoding.Json, Channel));
            packed.Add(await SubscribeAsync(node, WireEncoding.MsgPack, Channel));
        }
        await node.Broker.PublishAsync(Channel, kind == PayloadKind.Json ? """{"n":1}"""u8.ToArray() : [1, 2, 3], null, Herald.Channels.ChannelService.PolicyOf(ns), kind);

        var jsonArrays = json.Select(s => ArrayOf(Assert.Single(Drain(s)))).Distinct().ToList();
        var packedArrays = packed.Select(s => ArrayOf(Assert.Single(Drain(s)))).Distinct().ToList();
        Assert.Single(jsonArrays);
        Assert.Single(packedArrays);
        Assert.NotSame(jsonArrays[0], packedArrays[0]);
        Assert.Equal((byte)'{', jsonArrays[0][0]);
        Assert.Equal(0x81, packedArrays[0][0]); // a MessagePack map of one key: {push: …}
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DeliveringToMoreSubscribers_AllocatesNothingMorePerSubscriber(bool msgPack)
    {
        var encoding = msgPack ? WireEncoding.MsgPack : WireEncoding.Json;
        var few = await AllocatedPerPublicationAsync(encoding, 4);
        var many = await AllocatedPerPublicationAsync(encoding, 404);
        // 400 more subscribers: a copy of the push per subscriber would be 400 × ~60 bytes.
        Assert.True(many - few < 400, $"{encoding}: {few} bytes per publication for 4 subscribers, {many} for 404");
    }

    private static async Task<long> AllocatedPerPublicationAsync(WireEncoding encoding, int subscribers)
    {
        var (node, ns) = await StartAsync();
        await using var _ = node;
        const string Channel = "chat:alloc";
        var sessions = new List<ClientSession>();
        for (var i = 0; i < subscribers; i++)
        {
            sessions.Add(await SubscribeAsync(node, encoding, Channel));
        }
        var policy = Herald.Channels.ChannelService.PolicyOf(ns);
        var payload = """{"n":1}"""u8.ToArray();
        const int Publications = 50;
        for (var warm = 0; warm < 5; warm++)
        {
            await node.Broker.PublishAsync(Channel, payload, null, policy);
        }
        sessions.ForEach(s => Drain(s));
        var received = 0;
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Publications; i++)
        {
            await node.Broker.PublishAsync(Channel, payload, null, policy);
            // Read as the writer would, so that the queues stay short and never grow their storage while measured.
            foreach (var session in sessions)
            {
                while (session.Outbound.Reader.TryRead(out var message))
                {
                    session.Outbound.Written(message.Bytes.Length);
                    received++;
                }
            }
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(Publications * subscribers, received);
        return allocated / Publications;
    }
}
