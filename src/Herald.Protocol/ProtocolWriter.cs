using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Herald.Protocol;

/// <summary>Encodes server → client messages. Each method returns one newline-free JSON message.</summary>
internal static class ProtocolWriter
{
    /// <summary>Writer options shared by every encoder: compact output, and no escaping beyond what JSON needs.</summary>
    public static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = false,
        SkipValidation = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static readonly byte[] PushPrefix = "{\"push\":{\"channel\":"u8.ToArray();
    private static readonly byte[] PubPrefix = ",\"pub\":"u8.ToArray();
    private static readonly byte[] PushSuffix = "}}"u8.ToArray();

    [ThreadStatic] private static ArrayBufferWriter<byte>? t_buffer;
    [ThreadStatic] private static Utf8JsonWriter? t_writer;

    /// <summary>
    /// Encodes a push frame <c>{"push":{"channel":…,"pub":{…}}}</c>. Called once per publication per node;
    /// the returned array is shared by every subscriber.
    /// </summary>
    public static byte[] EncodePush(string channel, Publication publication)
    {
        ArgumentNullException.ThrowIfNull(publication);
        var pub = publication.Json.Span;
        // Channel names are restricted to characters that never need escaping, so the name is copied as is.
        var nameLength = System.Text.Encoding.UTF8.GetByteCount(channel);
        var result = new byte[PushPrefix.Length + nameLength + 2 + PubPrefix.Length + pub.Length + PushSuffix.Length];
        var span = result.AsSpan();
        PushPrefix.CopyTo(span);
        var at = PushPrefix.Length;
        span[at++] = (byte)'"';
        at += System.Text.Encoding.UTF8.GetBytes(channel, span[at..]);
        span[at++] = (byte)'"';
        PubPrefix.CopyTo(span[at..]);
        at += PubPrefix.Length;
        pub.CopyTo(span[at..]);
        at += pub.Length;
        PushSuffix.CopyTo(span[at..]);
        return result;
    }

    /// <summary>
    /// Encodes a skip notice <c>{"push":{"channel":…,"skipped":{"from":…,"to":…}}}</c>: on a conflated channel, the offsets
    /// a subscriber that fell behind was not sent; the publication after <c>to</c> follows it. One per subscriber and
    /// time it fell behind, never per publication.
    /// </summary>
    public static byte[] EncodeSkipped(string channel, OffsetRange skipped) => Write((channel, skipped), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteStartObject(ProtocolNames.Push);
        w.WriteString(ProtocolNames.Channel, s.channel);
        WriteSkipped(w, s.skipped);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    /// <summary>Writes <c>"skipped":{"from":…,"to":…}</c>.</summary>
    public static void WriteSkipped(Utf8JsonWriter writer, OffsetRange skipped)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject(ProtocolNames.Skipped);
        writer.WriteNumber(ProtocolNames.From, skipped.From);
        writer.WriteNumber(ProtocolNames.To, skipped.To);
        writer.WriteEndObject();
    }

    /// <summary>Encodes an error reply <c>{"id":…,"error":{"code":…,"message":…}}</c>.</summary>
    public static byte[] EncodeError(long? id, string code, string message) => Write((id, code, message), static (w, s) =>
    {
        w.WriteStartObject();
        if (s.id is { } id)
        {
            w.WriteNumber(ProtocolNames.Id, id);
        }
        WriteErrorBody(w, s.code, s.message);
        w.WriteEndObject();
    });

    /// <summary>
    /// Encodes <c>{"close":{"code":…,"reason":…}}</c>: the last message of a stream that has no close frame of its own
    /// (Server-Sent Events), with the code a WebSocket would have closed with.
    /// </summary>
    public static byte[] EncodeClose(int code, string reason) => Write((code, reason), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteStartObject(ProtocolNames.Close);
        w.WriteNumber(ProtocolNames.Code, s.code);
        w.WriteString(ProtocolNames.Reason, s.reason);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    /// <summary>Writes the <c>"error":{"code":…,"message":…}</c> property.</summary>
    public static void WriteErrorBody(Utf8JsonWriter writer, string code, string message)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject(ProtocolNames.Error);
        writer.WriteString(ProtocolNames.Code, code);
        writer.WriteString(ProtocolNames.Message, message);
        writer.WriteEndObject();
    }

    /// <summary>Writes a JSON array of publications from their cached encodings.</summary>
    public static void WritePublications(Utf8JsonWriter writer, IReadOnlyList<Publication> publications)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(publications);
        writer.WriteStartArray(ProtocolNames.Publications);
        foreach (var publication in publications)
        {
            writer.WriteRawValue(publication.Json.Span, skipInputValidation: true);
        }
        writer.WriteEndArray();
    }

    /// <summary>
    /// Encodes a reply <c>{"id":…,"result":{…}}</c>; <paramref name="writeResult"/> writes the result's properties.
    /// </summary>
    public static byte[] EncodeResult<TState>(long? id, TState state, Action<Utf8JsonWriter, TState> writeResult) =>
        Write((id, state, writeResult), static (w, s) =>
        {
            w.WriteStartObject();
            if (s.id is { } id)
            {
                w.WriteNumber(ProtocolNames.Id, id);
            }
            w.WriteStartObject(ProtocolNames.Result);
            s.writeResult(w, s.state);
            w.WriteEndObject();
            w.WriteEndObject();
        });

    /// <summary>Runs <paramref name="write"/> against a per-thread reusable writer and returns a copy of the bytes.</summary>
    public static byte[] Write<TState>(TState state, Action<Utf8JsonWriter, TState> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(1024);
        var writer = t_writer ??= new Utf8JsonWriter(buffer, WriterOptions);
        buffer.ResetWrittenCount();
        writer.Reset(buffer);
        try
        {
            write(writer, state);
            writer.Flush();
            return buffer.WrittenSpan.ToArray();
        }
        finally
        {
            writer.Reset();
            if (buffer.Capacity > 1 << 20)
            {
                // Don't let one huge reply pin a megabyte per thread forever.
                t_buffer = null;
                t_writer = null;
            }
        }
    }
}
