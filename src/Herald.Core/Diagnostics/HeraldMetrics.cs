using System.Diagnostics;
using System.Diagnostics.Metrics;
using Herald.Protocol;

namespace Herald.Diagnostics;

/// <summary>
/// Herald's counters, published through the <c>Herald</c> <see cref="Meter"/> and read by <c>/api/stats</c>.
/// Each number is counted once, here; the meter's instruments observe these fields rather than counting again.
/// </summary>
/// <remarks>
/// The delivery latency histogram is the exception the API forces: <see cref="System.Diagnostics.Metrics"/> has no
/// observable histogram, so each delivery is recorded by one call that updates this class's buckets (read by
/// <c>/metrics</c>) and, only while a listener such as OpenTelemetry is attached, the meter's
/// <c>herald.delivery_latency</c> histogram. Each exporter sees every delivery once.
/// </remarks>
internal sealed class HeraldMetrics : IDisposable
{
    /// <summary>The name of Herald's meter.</summary>
    public const string MeterName = "Herald";

    private readonly Meter _meter;
    private long _publications;
    private long _deliveries;
    private long _slowConsumerCloses;
    private long _conflatedSkips;
    private long _webSocketConnections;
    private long _msgPackWebSocketConnections;
    private long _sseConnections;
    private long _commands;
    private long _commandErrors;
    private long _pollsWithData;
    private long _pollsEmpty;
    private long _pollsNotModified;
    private long _dispatchOverflows;
    private long _publishFanOutWaits;
    private readonly Func<long> _dispatchBacklog;
    private readonly LatencyHistogram[] _latency = [new(), new(), new(), new()]; // indexed by DeliveryTransport
    private readonly Histogram<double> _latencyInstrument;
    private readonly long[] _bytesSent = new long[BytesSentSlots.Length];
    private readonly RecentClients _longPollers = new();
    private readonly RecentClients _shortPollers = new();

    /// <summary>The <c>transport</c> and <c>protocol</c> labels of each count in <see cref="BytesSent(int)"/>.</summary>
    public static readonly (string Transport, string Protocol)[] BytesSentSlots =
    [
        ("websocket", "json"), ("long_poll", "json"), ("short_poll", "json"), ("sse", "json"), ("websocket", "msgpack"),
    ];

    // One tag per transport, made once, so that recording to the meter does not allocate.
    private static readonly KeyValuePair<string, object?>[] s_transportTags =
    [
        new("transport", TransportLabel(DeliveryTransport.WebSocket)),
        new("transport", TransportLabel(DeliveryTransport.LongPoll)),
        new("transport", TransportLabel(DeliveryTransport.ShortPoll)),
        new("transport", TransportLabel(DeliveryTransport.Sse)),
    ];

    /// <summary>Creates the counters and registers the meter's instruments.</summary>
    /// <param name="dispatchBacklog">Reads the node's fan-out backlog (see <see cref="DispatchBacklog"/>); none when omitted.</param>
    public HeraldMetrics(Func<long>? dispatchBacklog = null)
    {
        _dispatchBacklog = dispatchBacklog ?? (static () => 0);
        _meter = new Meter(MeterName);
        _meter.CreateObservableCounter("herald.publications", () => Publications, description: "Publications appended by this node.");
        _meter.CreateObservableCounter("herald.deliveries", () => Deliveries, description: "Publications queued to subscribers by this node.");
        _meter.CreateObservableCounter("herald.slow_consumer_closes", () => SlowConsumerCloses, description: "Connections closed because their outbound queue was full.");
        _meter.CreateObservableCounter("herald.conflated_skips", () => ConflatedSkips, description: "Publications of conflated channels not sent to a subscriber that fell behind, replaced by a newer one.");
        _meter.CreateObservableCounter("herald.commands", () => Commands, description: "Client commands handled.");
        _meter.CreateObservableCounter("herald.command_errors", () => CommandErrors, description: "Client commands answered with an error.");
        _meter.CreateObservableCounter("herald.poll_requests", () => new[]
        {
            new Measurement<long>(PollsWithData, new KeyValuePair<string, object?>("result", "data")),
            new Measurement<long>(PollsEmpty, new KeyValuePair<string, object?>("result", "empty")),
            new Measurement<long>(PollsNotModified, new KeyValuePair<string, object?>("result", "not_modified")),
        }, description: "Poll requests answered, by result.");
        _latencyInstrument = _meter.CreateHistogram("herald.delivery_latency", unit: "s",
            description: "Time from a publication's acceptance by this node to its bytes being handed to a subscriber's transport, by transport.",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyHistogram.BucketBounds });
        _meter.CreateObservableUpDownCounter("herald.dispatch_backlog", () => DispatchBacklog, description: "Publications handed to this node's fan-out and not yet delivered to its subscribers, all channels.");
        _meter.CreateObservableCounter("herald.dispatch_overflows", () => DispatchOverflows, description: "Times a channel's fan-out backlog reached Herald:MaxDispatchBacklog (twice it with Herald:PublishBackpressure) and was dropped.");
        _meter.CreateObservableCounter("herald.publish_fanout_waits", () => PublishFanOutWaits, description: "Publishes that waited for a channel's fan-out backlog to fall under Herald:MaxDispatchBacklog (only with Herald:PublishBackpressure).");
        _meter.CreateObservableUpDownCounter("herald.connections", () => new[]
        {
            new Measurement<long>(WebSocketConnections, new KeyValuePair<string, object?>("transport", "websocket")),
            new Measurement<long>(SseConnections, new KeyValuePair<string, object?>("transport", "sse")),
        }, description: "Open connections by transport.");
        _meter.CreateObservableUpDownCounter("herald.websocket_connections", () => new[]
        {
            new Measurement<long>(WebSocketConnections - MsgPackWebSocketConnections, new KeyValuePair<string, object?>("protocol", "json")),
            new Measurement<long>(MsgPackWebSocketConnections, new KeyValuePair<string, object?>("protocol", "msgpack")),
        }, description: "Open WebSocket connections by subprotocol (herald.json, herald.msgpack).");
        _meter.CreateObservableUpDownCounter("herald.pollers", () => new[]
        {
            new Measurement<long>(Pollers(DeliveryTransport.LongPoll), new KeyValuePair<string, object?>("transport", "long_poll")),
            new Measurement<long>(Pollers(DeliveryTransport.ShortPoll), new KeyValuePair<string, object?>("transport", "short_poll")),
        }, description: "Distinct clients that polled in the last 10 to 20 seconds (estimated), by kind of poll.");
        _meter.CreateObservableCounter("herald.bytes_sent", () =>
        {
            var measurements = new Measurement<long>[BytesSentSlots.Length];
            for (var i = 0; i < measurements.Length; i++)
            {
                measurements[i] = new Measurement<long>(BytesSent(i),
                    new KeyValuePair<string, object?>("transport", BytesSentSlots[i].Transport), new KeyValuePair<string, object?>("protocol", BytesSentSlots[i].Protocol));
            }
            return measurements;
        }, unit: "By", description: "Message bytes handed to clients' transports, by transport and protocol.");
    }

    /// <summary>This instance's meter (tests tell it apart from other nodes' meters of the same name).</summary>
    internal Meter Meter => _meter;

    /// <summary>Publications appended through this node.</summary>
    public long Publications => Volatile.Read(ref _publications);

    /// <summary>Publications queued to subscribers of this node.</summary>
    public long Deliveries => Volatile.Read(ref _deliveries);

    /// <summary>Connections closed with <c>4002</c> (slow consumer).</summary>
    public long SlowConsumerCloses => Volatile.Read(ref _slowConsumerCloses);

    /// <summary>Publications of conflated channels that subscribers were not sent because a newer one replaced them.</summary>
    public long ConflatedSkips => Volatile.Read(ref _conflatedSkips);

    /// <summary>Open WebSocket connections.</summary>
    public long WebSocketConnections => Volatile.Read(ref _webSocketConnections);

    /// <summary>Open WebSocket connections on <c>herald.msgpack</c> (the rest of <see cref="WebSocketConnections"/> are on <c>herald.json</c>).</summary>
    public long MsgPackWebSocketConnections => Volatile.Read(ref _msgPackWebSocketConnections);

    /// <summary>Message bytes sent through the transport and protocol of <see cref="BytesSentSlots"/>[<paramref name="slot"/>].</summary>
    public long BytesSent(int slot) => Volatile.Read(ref _bytesSent[slot]);

    /// <summary>
    /// Counts <paramref name="bytes"/> handed to a client's transport: WebSocket frame payloads (replies and pushes, as
    /// sent), SSE stream text (events and heartbeats), poll answer bodies. <paramref name="msgPack"/> only for a
    /// <c>herald.msgpack</c> WebSocket.
    /// </summary>
    public void Sent(DeliveryTransport transport, bool msgPack, long bytes) =>
        Interlocked.Add(ref _bytesSent[msgPack && transport == DeliveryTransport.WebSocket ? 4 : (int)transport], bytes);

    /// <summary>The estimated number of distinct clients whose polls of this kind (long or short) reached this node in the last 10 to 20 s.</summary>
    public long Pollers(DeliveryTransport transport) =>
        (transport == DeliveryTransport.LongPoll ? _longPollers : _shortPollers).Estimate(Stopwatch.GetTimestamp());

    /// <summary>
    /// Notes a poll for <see cref="Pollers"/>: its client is its <c>client</c> id when it sent one (the Herald clients
    /// do), else its remote address (<paramref name="addressHash"/>), so that <c>curl</c> in a loop counts once.
    /// </summary>
    public void Polled(bool longPoll, string? clientId, int addressHash) =>
        (longPoll ? _longPollers : _shortPollers).Seen(clientId is null ? addressHash : StringComparer.Ordinal.GetHashCode(clientId), Stopwatch.GetTimestamp());

    /// <summary>Open Server-Sent Events streams.</summary>
    public long SseConnections => Volatile.Read(ref _sseConnections);

    /// <summary>Commands handled.</summary>
    public long Commands => Volatile.Read(ref _commands);

    /// <summary>Commands answered with an error.</summary>
    public long CommandErrors => Volatile.Read(ref _commandErrors);

    /// <summary>Polls answered with publications (or a changed position).</summary>
    public long PollsWithData => Volatile.Read(ref _pollsWithData);

    /// <summary>Polls answered with nothing new.</summary>
    public long PollsEmpty => Volatile.Read(ref _pollsEmpty);

    /// <summary>Polls answered <c>304 Not Modified</c>.</summary>
    public long PollsNotModified => Volatile.Read(ref _pollsNotModified);

    /// <summary>Publications handed to this node's fan-out and not yet delivered, all channels; read when asked, counted nowhere.</summary>
    public long DispatchBacklog => _dispatchBacklog();

    /// <summary>Times a channel's fan-out backlog was dropped for reaching <c>Herald:MaxDispatchBacklog</c> (twice it with <c>Herald:PublishBackpressure</c>).</summary>
    public long DispatchOverflows => Volatile.Read(ref _dispatchOverflows);

    /// <summary>Publishes through this node that waited for room in a channel's fan-out backlog.</summary>
    public long PublishFanOutWaits => Volatile.Read(ref _publishFanOutWaits);

    /// <summary>The name of a transport in the <c>transport</c> label: <c>websocket</c>, <c>long_poll</c>, <c>short_poll</c> or <c>sse</c>.</summary>
    public static string TransportLabel(DeliveryTransport transport) => transport switch
    {
        DeliveryTransport.WebSocket => "websocket",
        DeliveryTransport.LongPoll => "long_poll",
        DeliveryTransport.ShortPoll => "short_poll",
        DeliveryTransport.Sse => "sse",
        _ => throw new ArgumentOutOfRangeException(nameof(transport)),
    };

    /// <summary>The delivery latency histogram of one transport.</summary>
    public LatencyHistogram DeliveryLatency(DeliveryTransport transport) => _latency[(int)transport];

    /// <summary>
    /// Records one delivery: a publication accepted at <paramref name="acceptedTimestamp"/> (its
    /// <see cref="Publication.AcceptedTimestamp"/>) whose bytes the transport took at <paramref name="writtenTimestamp"/>
    /// (both <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> values). Allocation-free.
    /// </summary>
    public void DeliveryWritten(DeliveryTransport transport, long acceptedTimestamp, long writtenTimestamp)
    {
        var seconds = _latency[(int)transport].Record(acceptedTimestamp, writtenTimestamp);
        if (_latencyInstrument.Enabled)
        {
            _latencyInstrument.Record(seconds, s_transportTags[(int)transport]);
        }
    }

    /// <summary>Records one delivery per publication in <paramref name="publications"/>, all written at <paramref name="writtenTimestamp"/>.</summary>
    public void DeliveriesWritten(DeliveryTransport transport, IReadOnlyList<Publication> publications, long writtenTimestamp)
    {
        ArgumentNullException.ThrowIfNull(publications);
        // An index loop: foreach over the interface would box an enumerator per call.
        for (var i = 0; i < publications.Count; i++)
        {
            DeliveryWritten(transport, publications[i].AcceptedTimestamp, writtenTimestamp);
        }
    }

    /// <summary>Counts an answered poll.</summary>
    public void PollAnswered(bool hasData, bool notModified) =>
        Interlocked.Increment(ref notModified ? ref _pollsNotModified : ref hasData ? ref _pollsWithData : ref _pollsEmpty);

    internal void Published() => Interlocked.Increment(ref _publications);

    internal void Delivered(int count) => Interlocked.Add(ref _deliveries, count);

    internal void DispatchOverflowed() => Interlocked.Increment(ref _dispatchOverflows);

    internal void PublishWaitedForFanOut() => Interlocked.Increment(ref _publishFanOutWaits);

    internal void SlowConsumerClosed() => Interlocked.Increment(ref _slowConsumerCloses);

    internal void ConflatedSkipped(ulong count) => Interlocked.Add(ref _conflatedSkips, (long)count);

    /// <summary>Counts a handled command.</summary>
    public void CommandHandled(bool failed)
    {
        Interlocked.Increment(ref _commands);
        if (failed)
        {
            Interlocked.Increment(ref _commandErrors);
        }
    }

    /// <summary>Counts a WebSocket connection opening (+1) or closing (-1).</summary>
    public void WebSocketConnectionChanged(int delta, bool msgPack)
    {
        Interlocked.Add(ref _webSocketConnections, delta);
        if (msgPack)
        {
            Interlocked.Add(ref _msgPackWebSocketConnections, delta);
        }
    }

    /// <summary>Counts a Server-Sent Events stream opening (+1) or closing (-1).</summary>
    public void SseConnectionChanged(int delta) => Interlocked.Add(ref _sseConnections, delta);

    /// <inheritdoc/>
    public void Dispose() => _meter.Dispose();
}
