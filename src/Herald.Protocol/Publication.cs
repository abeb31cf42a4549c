using System.Buffers;
using System.Diagnostics;
using System.Text.Json;

namespace Herald.Protocol;

/// <summary>One message in a channel's log.</summary>
/// <remarks>
/// A publication is immutable and shared by every subscriber of a node: each of its encodings is produced once
/// (<see cref="Json"/> for <c>herald.json</c> and polls, a MessagePack one for <c>herald.msgpack</c>) and the same bytes
/// are written to every connection and every poll answer of that protocol.
/// </remarks>
public sealed class Publication
{
    private byte[]? _json;
    private byte[]? _msgPack;

    /// <summary>Creates a publication.</summary>
    /// <param name="offset">Its offset in the channel's log (1, 2, 3, …).</param>
    /// <param name="data">The payload: compact UTF-8 JSON, or the bytes as published when <paramref name="kind"/> is <see cref="PayloadKind.Binary"/>.</param>
    /// <param name="info">Who published it; <see langword="null"/> for the server API.</param>
    /// <param name="timestamp">When the broker appended it, in Unix milliseconds.</param>
    /// <param name="kind">Whether <paramref name="data"/> is JSON or bytes.</param>
    public Publication(ulong offset, ReadOnlyMemory<byte> data, ClientInfo? info, long timestamp, PayloadKind kind = PayloadKind.Json)
    {
        Offset = offset;
        Data = data;
        Info = info;
        Timestamp = timestamp;
        Kind = kind;
        AcceptedTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>Whether <see cref="Data"/> is JSON or bytes.</summary>
    public PayloadKind Kind { get; }

    /// <summary>The offset of this publication in its channel's log.</summary>
    public ulong Offset { get; }

    /// <summary>The payload: UTF-8 JSON, or bytes when <see cref="Kind"/> is <see cref="PayloadKind.Binary"/>.</summary>
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
    /// The JSON wire form <c>{"offset":…,"data":…,"info":{…}}</c> (<c>"b64":"…"</c> in place of <c>"data"</c> for bytes),
    /// encoded on first use and cached; concurrent first calls may both encode, which is harmless because the result is
    /// identical.
    /// </summary>
    public ReadOnlyMemory<byte> Json => _json ??= Encode();

    /// <summary>The <c>herald.msgpack</c> wire form, a map with the keys of <see cref="Json"/>; encoded once, like it.</summary>
    internal ReadOnlyMemory<byte> MsgPack => _msgPack ??= MsgPackCodec.EncodePublication(this);

    private byte[] Encode()
    {
        var buffer = new ArrayBufferWriter<byte>((Kind == PayloadKind.Binary ? (Data.Length + 2) / 3 * 4 : Data.Length) + 64);
        using (var writer = new Utf8JsonWriter(buffer, ProtocolWriter.WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteNumber(ProtocolNames.Offset, Offset);
            if (Kind == PayloadKind.Binary)
            {
                writer.WriteBase64String(ProtocolNames.B64, Data.Span);
            }
            else
            {
                writer.WritePropertyName(ProtocolNames.Data);
                writer.WriteRawValue(Data.Span, skipInputValidation: true);
            }
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
