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

    /// <summary>Creates the counters and registers the meter's instruments.</summary>
    public HeraldMetrics()
    {
        _meter = new Meter(MeterName);
        _meter.CreateObservableCounter("herald.publications", () => Publications, description: "Publications appended by this node.");
        _meter.CreateObservableCounter("herald.deliveries", () => Deliveries, description: "Publications queued to subscribers by this node.");
        _meter.CreateObservableCounter("herald.slow_consumer_closes", () => SlowConsumerCloses, description: "Connections closed because their outbound queue was full.");
        _meter.CreateObservableCounter("herald.commands", () => Commands, description: "Client commands handled.");
        _meter.CreateObservableCounter("herald.command_errors", () => CommandErrors, description: "Client commands answered with an error.");
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

    internal void Published() => Interlocked.Increment(ref _publications);

    internal void Delivered(int count) => Interlocked.Add(ref _deliveries, count);

    internal void SlowConsumerClosed() => Interlocked.Increment(ref _slowConsumerCloses);

    internal void CommandHandled(bool failed)
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
