using System.Text;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.MicroBench;

/// <summary>
/// A real node on a real <see cref="MemoryBroker"/>, with real sessions subscribed the way a WebSocket's are (a
/// <c>connect</c> and a <c>subscribe</c> command through <see cref="ClientSession.HandleMessageAsync"/>), as the Core
/// tests build them. Only the socket is missing: the benchmarks read the sessions' queues as the writer would.
/// </summary>
internal sealed class BenchNode : IAsyncDisposable
{
    public const string Namespace = "bench";

    private BenchNode(HeraldNode node, NamespaceOptions ns, CapturingBroker broker)
    {
        Node = node;
        Ns = ns;
        Broker = broker;
    }

    public HeraldNode Node { get; }

    public NamespaceOptions Ns { get; }

    public CapturingBroker Broker { get; }

    /// <summary>What the broker calls with each publication: the node's entry into its fan-out.</summary>
    public IBrokerEventHandler Events => Broker.Events ?? throw new InvalidOperationException("the node did not start its broker");

    public static BenchNode Start()
    {
        // Limits raised past what the benchmarks do: they measure the paths, not the limits.
        var options = new HeraldOptions
        {
            AllowAnonymous = true,
            MaxCommandsPerSecond = 1_000_000,
            MaxConnections = 1_000_000,
            MaxConnectionsPerIp = 1_000_000,
        };
        var ns = new NamespaceOptions { AllowClientPublish = true, HistorySize = 100 };
        options.Namespaces[Namespace] = ns;
        var broker = new CapturingBroker(new MemoryBroker());
        // The fan-out runs inline, in the thread that hands the publication over, instead of in a thread-pool work item:
        // the benchmarks then measure the hand-off and the fan-out together, and read the queues right after.
        var node = new HeraldNode(options, broker) { ScheduleFanOut = static work => work.Execute() };
        node.StartAsync().AsTask().GetAwaiter().GetResult();
        return new BenchNode(node, ns, broker);
    }

    /// <summary>A connected session subscribed to <paramref name="channel"/>, its queue drained of the replies.</summary>
    public ClientSession Subscribe(string channel, WireEncoding encoding = WireEncoding.Json)
    {
        var session = new ClientSession(Node, new BenchTransport(encoding));
        var connect = Encoding.UTF8.GetBytes("""{"id":1,"op":"connect"}""");
        var subscribe = Encoding.UTF8.GetBytes($$"""{"id":2,"op":"subscribe","channel":"{{channel}}"}""");
        var frame = encoding == WireEncoding.Json
            ? [.. connect, (byte)'\n', .. subscribe]
            : MsgPackCodec.FromJson(connect).Concat(MsgPackCodec.FromJson(subscribe)).ToArray();
        session.HandleMessageAsync(frame).AsTask().GetAwaiter().GetResult();
        if (session.SubscriptionCount != 1)
        {
            throw new InvalidOperationException($"the session did not subscribe to {channel}");
        }
        Drain(session);
        return session;
    }

    /// <summary>Publishes through the broker (log append and fan-out), as <c>POST /api/publish</c> ends up doing.</summary>
    public StreamPosition Publish(string channel, ReadOnlyMemory<byte> data) =>
        Broker.PublishAsync(channel, data, null, Channels.ChannelService.PolicyOf(Ns)).AsTask().GetAwaiter().GetResult();

    /// <summary>Takes everything queued for <paramref name="session"/> as its writer would; returns how many messages.</summary>
    public static int Drain(ClientSession session)
    {
        var count = 0;
        var reader = session.Outbound.Reader;
        while (reader.TryRead(out var message))
        {
            session.Outbound.Written(message.Bytes.Length);
            count++;
        }
        return count;
    }

    public ValueTask DisposeAsync() => Node.DisposeAsync();

    private sealed class BenchTransport(WireEncoding encoding) : ISessionTransport
    {
        public string Name => "bench";

        public WireEncoding Encoding => encoding;

        // A benchmark that makes the node close a connection (slow consumer, a gap) is measuring a broken run.
        public void Close(int code, string reason) => throw new InvalidOperationException($"the node closed a benchmark connection: {code} {reason}");
    }
}

/// <summary>
/// A <see cref="MemoryBroker"/> that keeps the node's event handler, so a benchmark can hand publications to the node's
/// fan-out exactly as a broker does, without the log append in front of it.
/// </summary>
internal sealed class CapturingBroker(MemoryBroker inner) : IBroker
{
    public IBrokerEventHandler? Events { get; private set; }

    public ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default)
    {
        Events = handler;
        return inner.StartAsync(handler, cancellationToken);
    }

    public ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
        inner.PublishAsync(channel, data, info, history, kind, cancellationToken);

    public ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey idempotency, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
        inner.PublishAsync(channel, data, info, history, idempotency, kind, cancellationToken);

    public ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
        inner.ReadHistoryAsync(channel, afterOffset, limit, history, cancellationToken);

    public ValueTask<HistoryResult> ReadHistoryBackwardAsync(string channel, ulong? beforeOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
        inner.ReadHistoryBackwardAsync(channel, beforeOffset, limit, history, cancellationToken);

    public ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default) => inner.SubscribeAsync(channel, cancellationToken);

    public ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default) => inner.UnsubscribeAsync(channel, cancellationToken);

    public ValueTask SendControlAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default) => inner.SendControlAsync(message, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

/// <summary>The payload the load generator publishes (bench/Herald.Bench): about 100 bytes of JSON.</summary>
internal static class Payloads
{
    public const string Channel = "bench:lobby";

    public static readonly byte[] Json = Encoding.UTF8.GetBytes("{\"text\":\"@@" + new string('x', 86) + "\"}");
}
