using System.Diagnostics.Metrics;

namespace Herald.Diagnostics;

/// <summary>
/// Herald's counters, published through the <c>Herald</c> <see cref="Meter"/> and read by <c>/api/stats</c>.
/// Each number is counted once, here; the meter's instruments observe these fields rather than counting again.
/// </summary>
public sealed class HeraldMetrics : IDisposable
{
    /// <summary>The name of Herald's meter.</summary>
    public const string MeterName = "Herald";

    private readonly Meter _meter;
    private long _publications;
    private long _deliveries;
    private long _slowConsumerCloses;
    private long _webSocketConnections;
    private long _commands;
    private long _commandErrors;
    private long _pollsWithData;
    private long _pollsEmpty;
    private long _pollsNotModified;

    /// <summary>Creates the counters and registers the meter's instruments.</summary>
    public HeraldMetrics()
    {
        _meter = new Meter(MeterName);
        _meter.CreateObservableCounter("herald.publications", () => Publications, description: "Publications appended by this node.");
        _meter.CreateObservableCounter("herald.deliveries", () => Deliveries, description: "Publications queued to subscribers by this node.");
        _meter.CreateObservableCounter("herald.slow_consumer_closes", () => SlowConsumerCloses, description: "Connections closed because their outbound queue was full.");
        _meter.CreateObservableCounter("herald.commands", () => Commands, description: "Client commands handled.");
        _meter.CreateObservableCounter("herald.command_errors", () => CommandErrors, description: "Client commands answered with an error.");
        _meter.CreateObservableCounter("herald.poll_requests", () => new[]
        {
            new Measurement<long>(PollsWithData, new KeyValuePair<string, object?>("result", "data")),
            new Measurement<long>(PollsEmpty, new KeyValuePair<string, object?>("result", "empty")),
            new Measurement<long>(PollsNotModified, new KeyValuePair<string, object?>("result", "not_modified")),
        }, description: "Poll requests answered, by result.");
        _meter.CreateObservableUpDownCounter("herald.connections", () => new Measurement<long>(WebSocketConnections, new KeyValuePair<string, object?>("transport", "websocket")), description: "Open connections by transport.");
    }

    /// <summary>Publications appended through this node.</summary>
    public long Publications => Volatile.Read(ref _publications);

    /// <summary>Publications queued to subscribers of this node.</summary>
    public long Deliveries => Volatile.Read(ref _deliveries);

    /// <summary>Connections closed with <c>4002</c> (slow consumer).</summary>
    public long SlowConsumerCloses => Volatile.Read(ref _slowConsumerCloses);

    /// <summary>Open WebSocket connections.</summary>
    public long WebSocketConnections => Volatile.Read(ref _webSocketConnections);

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

    /// <summary>Counts an answered poll.</summary>
    public void PollAnswered(bool hasData, bool notModified) =>
        Interlocked.Increment(ref notModified ? ref _pollsNotModified : ref hasData ? ref _pollsWithData : ref _pollsEmpty);

    internal void Published() => Interlocked.Increment(ref _publications);

    internal void Delivered(int count) => Interlocked.Add(ref _deliveries, count);

    internal void SlowConsumerClosed() => Interlocked.Increment(ref _slowConsumerCloses);

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
    public void WebSocketConnectionChanged(int delta) => Interlocked.Add(ref _webSocketConnections, delta);

    /// <inheritdoc/>
    public void Dispose() => _meter.Dispose();
}
