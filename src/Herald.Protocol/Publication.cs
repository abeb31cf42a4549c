using System.Buffers;
using System.Diagnostics;
using System.Text.Json;

namespace Herald.Protocol;

/// <summary>One message in a channel's log.</summary>
/// <remarks>
/// A publication is immutable and shared by every subscriber of a node: its JSON encoding is produced once
/// (<see cref="Json"/>) and the same bytes are written to every connection and every poll answer.
/// </remarks>
public sealed class Publication
{
    private byte[]? _json;

    /// <summary>Creates a publication.</summary>
    /// <param name="offset">Its offset in the channel's log (1, 2, 3, …).</param>
    /// <param name="data">The payload, as UTF-8 JSON exactly as the publisher sent it.</param>
    /// <param name="info">Who published it; <see langword="null"/> for the server API.</param>
    /// <param name="timestamp">When the broker appended it, in Unix milliseconds.</param>
    public Publication(ulong offset, ReadOnlyMemory<byte> data, ClientInfo? info, long timestamp)
    {
        Offset = offset;
        Data = data;
        Info = info;
        Timestamp = timestamp;
        AcceptedTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>The offset of this publication in its channel's log.</summary>
    public ulong Offset { get; }

    /// <summary>The payload as UTF-8 JSON.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>Who published it, when a client did.</summary>
    public ClientInfo? Info { get; }

    /// <summary>When the broker appended it, in Unix milliseconds (used for delivery latency and history TTL).</summary>
    public long Timestamp { get; }

    /// <summary>
    /// When this node accepted the publication, as a <see cref="Stopwatch.GetTimestamp"/> value: by default the moment
    /// the object was created, which for the memory broker is the moment it was appended, and for a broker that
    /// receives publications from other nodes is the moment this node received it.
    /// </summary>
    /// <remarks>
    /// The start of the delivery latency histogram (<c>herald_delivery_latency_seconds</c>). A monotonic clock of this
    /// process rather than <see cref="Timestamp"/>, because wall clocks step and differ between nodes. A broker that
    /// rebuilds publications it has already seen (say, from stored history) sets the stamp it recorded first.
    /// </remarks>
    public long AcceptedTimestamp { get; init; }

    /// <summary>
    /// The wire form <c>{"offset":…,"data":…,"info":{…}}</c>, encoded on first use and cached;
    /// concurrent first calls may both encode, which is harmless because the result is identical.
    /// </summary>
    public ReadOnlyMemory<byte> Json => _json ??= Encode();

    private byte[] Encode()
    {
        var buffer = new ArrayBufferWriter<byte>(Data.Length + 64);
        using (var writer = new Utf8JsonWriter(buffer, ProtocolWriter.WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteNumber(ProtocolNames.Offset, Offset);
            writer.WritePropertyName(ProtocolNames.Data);
            writer.WriteRawValue(Data.Span, skipInputValidation: true);
            if (Info is not null)
            {
                writer.WriteStartObject(ProtocolNames.Info);
                writer.WriteString(ProtocolNames.User, Info.User);
                writer.WriteString(ProtocolNames.Client, Info.Client);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }
}
