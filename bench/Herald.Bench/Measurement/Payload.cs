using System.Buffers.Text;
using System.Diagnostics;
using System.Text;

namespace Herald.Bench.Measurement;

/// <summary>
/// The one payload every system carries: <c>@@&lt;Stopwatch timestamp&gt;</c> padded with <c>x</c>. It needs no JSON
/// escaping, so it reads the same inside a Herald push, a SignalR invocation, a Socket.IO event or a raw Nchan frame,
/// and the generator finds it by scanning bytes instead of parsing four protocols.
/// </summary>
internal static class Payload
{
    private static ReadOnlySpan<byte> Marker => "@@"u8;

    /// <summary>A payload of <paramref name="size"/> characters stamped now.</summary>
    public static string Create(int size)
    {
        var stamp = "@@" + Stopwatch.GetTimestamp().ToString(System.Globalization.CultureInfo.InvariantCulture);
        return stamp.Length >= size ? stamp : stamp + new string('x', size - stamp.Length);
    }

    /// <summary>Counts the payloads in a received message and records each one's latency in microseconds.</summary>
    public static int Scan(ReadOnlySpan<byte> message, Stats stats)
    {
        var count = 0;
        var now = Stopwatch.GetTimestamp();
        while (true)
        {
            var at = message.IndexOf(Marker);
            if (at < 0)
            {
                return count;
            }
            message = message[(at + 2)..];
            if (Utf8Parser.TryParse(message, out long stamp, out var consumed) && consumed > 0)
            {
                stats.RecordDelivery(now - stamp);
                count++;
                message = message[consumed..];
            }
        }
    }

    /// <summary>Same as <see cref="Scan(ReadOnlySpan{byte}, Stats)"/> for text already decoded.</summary>
    public static int Scan(string message, Stats stats) => Scan(Encoding.UTF8.GetBytes(message), stats);
}
