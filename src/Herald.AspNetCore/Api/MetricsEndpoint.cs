using System.Globalization;
using System.Text;
using Herald.Diagnostics;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore.Api;

/// <summary>
/// <c>GET /metrics</c>: the node's counters in the Prometheus text exposition format (version 0.0.4). The numbers
/// are the same ones the <c>Herald</c> meter observes and <c>/api/stats</c> reports; nothing is counted twice.
/// </summary>
internal static class MetricsEndpoint
{
    public static Task HandleAsync(HttpContext context, HeraldNode node)
    {
        var m = node.Metrics;
        var text = new StringBuilder(2048);
        Metric(text, "herald_connections", "gauge", "Open connections by transport.", ("transport=\"websocket\"", m.WebSocketConnections), ("transport=\"sse\"", m.SseConnections));
        Metric(text, "herald_websocket_connections", "gauge", "Open WebSocket connections by subprotocol (herald.json, herald.msgpack).",
            ("protocol=\"json\"", m.WebSocketConnections - m.MsgPackWebSocketConnections), ("protocol=\"msgpack\"", m.MsgPackWebSocketConnections));
        Metric(text, "herald_pollers", "gauge", "Distinct clients that polled this node in the last 10 to 20 seconds (estimated), by kind of poll.",
            ("transport=\"long_poll\"", m.Pollers(DeliveryTransport.LongPoll)), ("transport=\"short_poll\"", m.Pollers(DeliveryTransport.ShortPoll)));
        Metric(text, "herald_channels", "gauge", "Channels this node receives from the broker (subscribers, parked polls, lingering interest).", (null, node.ActiveChannels));
        Metric(text, "herald_polls_parked", "gauge", "Long polls waiting for a publication.", (null, node.ParkedPolls));
        Metric(text, "herald_publications_total", "counter", "Publications appended through this node.", (null, m.Publications));
        Metric(text, "herald_deliveries_total", "counter", "Publications queued to WebSocket and SSE subscribers of this node.", (null, m.Deliveries));
        Metric(text, "herald_dispatch_backlog", "gauge", "Publications handed to this node's fan-out and not yet delivered to its subscribers, all channels.", (null, m.DispatchBacklog));
        Metric(text, "herald_dispatch_overflows_total", "counter", "Times a channel's fan-out backlog reached Herald:MaxDispatchBacklog (twice it with Herald:PublishBackpressure) and was dropped (its subscribers on this node closed with 4004).", (null, m.DispatchOverflows));
        Metric(text, "herald_publish_fanout_waits_total", "counter", "Publishes through this node that waited for a channel's fan-out backlog to fall under Herald:MaxDispatchBacklog (only with Herald:PublishBackpressure).", (null, m.PublishFanOutWaits));
        Metric(text, "herald_slow_consumer_closes_total", "counter", "Connections closed with 4002 because their outbound queue was full.", (null, m.SlowConsumerCloses));
        Metric(text, "herald_conflated_skips_total", "counter", "Publications of conflated channels not sent to a subscriber that fell behind, replaced by a newer one.", (null, m.ConflatedSkips));
        Metric(text, "herald_commands_total", "counter", "Client commands handled (WebSocket and /cmd).", (null, m.Commands));
        Metric(text, "herald_command_errors_total", "counter", "Client commands answered with an error.", (null, m.CommandErrors));
        Metric(text, "herald_poll_requests_total", "counter", "Poll requests answered, by result.",
            ("result=\"data\"", m.PollsWithData), ("result=\"empty\"", m.PollsEmpty), ("result=\"not_modified\"", m.PollsNotModified));
        BytesSent(text, m);
        DeliveryLatency(text, m);
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        return context.Response.WriteAsync(text.ToString());
    }

    private static void BytesSent(StringBuilder text, HeraldMetrics m)
    {
        const string name = "herald_bytes_sent_total";
        text.Append("# HELP ").Append(name).Append(" Message bytes handed to clients' transports (WebSocket frame payloads, SSE stream text, poll answer bodies), by transport and protocol.\n");
        text.Append("# TYPE ").Append(name).Append(" counter\n");
        for (var i = 0; i < HeraldMetrics.BytesSentSlots.Length; i++)
        {
            var (transport, protocol) = HeraldMetrics.BytesSentSlots[i];
            text.Append(name).Append("{transport=\"").Append(transport).Append("\",protocol=\"").Append(protocol).Append("\"} ")
                .Append(m.BytesSent(i).ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
    }

    private static void DeliveryLatency(StringBuilder text, HeraldMetrics m)
    {
        const string name = "herald_delivery_latency_seconds";
        text.Append("# HELP ").Append(name)
            .Append(" Time from a publication's acceptance by this node to its bytes being handed to a subscriber's transport, by transport.\n");
        text.Append("# TYPE ").Append(name).Append(" histogram\n");
        var bounds = LatencyHistogram.BucketBounds;
        foreach (var transport in Transports)
        {
            var label = HeraldMetrics.TransportLabel(transport);
            var snapshot = m.DeliveryLatency(transport).Snapshot();
            for (var i = 0; i < snapshot.CumulativeBuckets.Count; i++)
            {
                text.Append(name).Append("_bucket{transport=\"").Append(label).Append("\",le=\"")
                    .Append(i < bounds.Count ? bounds[i].ToString(CultureInfo.InvariantCulture) : "+Inf").Append("\"} ")
                    .Append(snapshot.CumulativeBuckets[i].ToString(CultureInfo.InvariantCulture)).Append('\n');
            }
            text.Append(name).Append("_sum{transport=\"").Append(label).Append("\"} ")
                .Append(snapshot.SumSeconds.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
            text.Append(name).Append("_count{transport=\"").Append(label).Append("\"} ")
                .Append(snapshot.Count.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
    }

    private static readonly DeliveryTransport[] Transports = [DeliveryTransport.WebSocket, DeliveryTransport.LongPoll, DeliveryTransport.ShortPoll, DeliveryTransport.Sse];

    private static void Metric(StringBuilder text, string name, string type, string help, params (string? Labels, long Value)[] samples)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        foreach (var (labels, value) in samples)
        {
            text.Append(name);
            if (labels is not null)
            {
                text.Append('{').Append(labels).Append('}');
            }
            text.Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
    }
}
