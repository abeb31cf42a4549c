using System.Buffers;
using System.Text.Json;
using MessagePack;

namespace Herald.Protocol;

/// <summary>
/// The <c>herald.msgpack</c> subprotocol: the same messages as <c>herald.json</c>, each a MessagePack map with the same
/// keys, several back to back in one binary frame. Publications and pushes are encoded here directly (once per
/// publication); every other reply is written by <see cref="ProtocolWriter"/> and converted by <see cref="FromJson"/>,
/// and every inbound message is converted to the JSON command it stands for (<see cref="TryToJsonCommand"/>), so that
/// the commands have one parser and one set of rules.
/// </summary>
/// <remarks>
/// The JSON ↔ MessagePack mapping (docs/protocol.md): object ↔ map with str keys, array ↔ array, string ↔ str,
/// integer ↔ int (the smallest form), other numbers ↔ float 64, true/false ↔ bool, null ↔ nil. Bytes are a <c>bin</c>,
/// and only a publication's <c>data</c> (and a <c>publish</c>'s) may be one: that is where <c>herald.json</c> has
/// <c>"b64"</c>. MessagePack that has no JSON form (a bin elsewhere, ext types, non-str keys, NaN and infinities,
/// nesting deeper than <see cref="MaxDepth"/>) is refused.
/// </remarks>
internal static class MsgPackCodec
{
    /// <summary>How deep maps and arrays of an inbound message may nest (the JSON parser's own limit).</summary>
    public const int MaxDepth = 64;

    private static readonly byte[] KeyPush = Str("push");
    private static readonly byte[] KeyChannel = Str("channel");
    private static readonly byte[] KeyPub = Str("pub");
    private static readonly byte[] KeyOffset = Str("offset");
    private static readonly byte[] KeyData = Str("data");
    private static readonly byte[] KeyInfo = Str("info");
    private static readonly byte[] KeyUser = Str("user");
    private static readonly byte[] KeyClient = Str("client");

    private static readonly JsonDocumentOptions ReadOptions = new() { MaxDepth = 2 * MaxDepth };

    /// <summary>A publication as a map <c>{offset, data, info?}</c>; <c>data</c> is a bin for bytes.</summary>
    public static byte[] EncodePublication(Publication publication)
    {
        ArgumentNullException.ThrowIfNull(publication);
        var buffer = new ArrayBufferWriter<byte>(publication.Data.Length + 64);
        var writer = new MessagePackWriter(buffer);
        WritePublication(ref writer, publication);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A push <c>{push: {channel, pub}}</c>, from the publication's cached encoding; once per publication.</summary>
    public static byte[] EncodePush(string channel, Publication publication)
    {
        ArgumentNullException.ThrowIfNull(publication);
        var pub = publication.MsgPack.Span;
        var buffer = new ArrayBufferWriter<byte>(pub.Length + channel.Length + 32);
        var writer = new MessagePackWriter(buffer);
        writer.WriteMapHeader(1);
        writer.WriteRaw(KeyPush);
        writer.WriteMapHeader(2);
        writer.WriteRaw(KeyChannel);
        writer.Write(channel);
        writer.WriteRaw(KeyPub);
        writer.WriteRaw(pub);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static void WritePublication(ref MessagePackWriter writer, Publication publication)
    {
        writer.WriteMapHeader(publication.Info is null ? 2 : 3);
        writer.WriteRaw(KeyOffset);
        writer.Write(publication.Offset);
        writer.WriteRaw(KeyData);
        if (publication.Kind == PayloadKind.Binary)
        {
            writer.Write(publication.Data.Span);
        }
        else
        {
            using var document = JsonDocument.Parse(publication.Data, ReadOptions);
            WriteElement(ref writer, document.RootElement, Path.Plain);
        }
        if (publication.Info is { } info)
        {
            writer.WriteRaw(KeyInfo);
            writer.WriteMapHeader(2);
            writer.WriteRaw(KeyUser);
            writer.Write(info.User);
            writer.WriteRaw(KeyClient);
            writer.Write(info.Client);
        }
    }

    /// <summary>
    /// Converts one JSON server message (a reply or an error, as <see cref="ProtocolWriter"/> writes it) to MessagePack.
    /// The publications it carries (<c>push.pub</c>, <c>result.publications[]</c>, <c>push.subscribe.publications[]</c>) get their <c>"b64"</c> back as a
    /// <c>data</c> bin; nothing else is touched, so a <c>b64</c> key inside application JSON stays a string.
    /// </summary>
    /// <param name="json">The message.</param>
    /// <param name="command">
    /// The message is a client's command (the .NET client's side): its top-level <c>"b64"</c> becomes a <c>data</c> bin.
    /// </param>
    public static byte[] FromJson(ReadOnlyMemory<byte> json, bool command = false)
    {
        using var document = JsonDocument.Parse(json, ReadOptions);
        var buffer = new ArrayBufferWriter<byte>(json.Length + 16);
        var writer = new MessagePackWriter(buffer);
        WriteElement(ref writer, document.RootElement, command ? Path.Command : Path.Root);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Where a value sits in a server message, so that only the publications' <c>b64</c> becomes a bin.</summary>
    private enum Path
    {
        Plain,
        Command,
        Root,
        Push,
        Result,
        Publications,
        Publication,
        Channels,
        ChannelAnswer,
    }

    private static void WriteElement(ref MessagePackWriter writer, JsonElement element, Path path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteMapHeader(element.GetPropertyCount());
                foreach (var property in element.EnumerateObject())
                {
                    if (path is Path.Publication or Path.Command && property.NameEquals("b64"u8) && property.Value.ValueKind == JsonValueKind.String)
                    {
                        writer.WriteRaw(KeyData);
                        writer.Write(property.Value.GetBytesFromBase64());
                        continue;
                    }
                    writer.Write(property.Name);
                    WriteElement(ref writer, property.Value, Child(path, property.Name));
                }
                break;
            case JsonValueKind.Array:
                writer.WriteArrayHeader(element.GetArrayLength());
                var item = path == Path.Publications ? Path.Publication : Path.Plain;
                foreach (var value in element.EnumerateArray())
                {
                    WriteElement(ref writer, value, item);
                }
                break;
            case JsonValueKind.String:
                writer.Write(element.GetString());
                break;
            case JsonValueKind.Number:
                if (element.TryGetInt64(out var signed))
                {
                    writer.Write(signed);
                }
                else if (element.TryGetUInt64(out var unsigned))
                {
                    writer.Write(unsigned);
                }
                else
                {
                    writer.Write(element.GetDouble());
                }
                break;
            case JsonValueKind.True:
                writer.Write(true);
                break;
            case JsonValueKind.False:
                writer.Write(false);
                break;
            default:
                writer.WriteNil();
                break;
        }
    }

    private static Path Child(Path path, string name) => path switch
    {
        Path.Root when name == "push" => Path.Push,
        Path.Root when name == "result" => Path.Result,
        Path.Root when name == "channels" => Path.Channels,
        Path.Push when name == "pub" => Path.Publication,
        Path.Push when name == "subscribe" => Path.ChannelAnswer,
        Path.Result or Path.ChannelAnswer when name == "publications" => Path.Publications,
        Path.Channels => Path.ChannelAnswer,
        _ => Path.Plain,
    };

    /// <summary>
    /// Finds the first whole MessagePack value at the start of <paramref name="frame"/>, without recursion (a value nested
    /// 10,000 deep costs a counter, not a stack). On failure the frame cannot be split any further: the value is
    /// truncated or not MessagePack.
    /// </summary>
    public static bool TrySplit(ReadOnlyMemory<byte> frame, out int length, out string? error)
    {
        var reader = new MessagePackReader(frame);
        long remaining = 1;
        try
        {
            while (remaining > 0)
            {
                remaining--;
                switch (reader.NextMessagePackType)
                {
                    case MessagePackType.Map:
                        remaining += 2L * reader.ReadMapHeader();
                        break;
                    case MessagePackType.Array:
                        remaining += reader.ReadArrayHeader();
                        break;
                    case MessagePackType.Unknown:
                        throw new MessagePackSerializationException("0xc1 is not a MessagePack type");
                    default:
                        reader.Skip();
                        break;
                }
            }
            length = (int)reader.Consumed;
            error = null;
            return true;
        }
        catch (Exception ex) when (ex is EndOfStreamException or ArgumentOutOfRangeException)
        {
            // The library reports a str or bin whose announced length is past the end (or past 2 GB) as out of range.
            length = 0;
            error = "truncated MessagePack: the frame ends inside a message";
            return false;
        }
        catch (MessagePackSerializationException)
        {
            length = 0;
            error = "malformed MessagePack";
            return false;
        }
    }

    /// <summary>
    /// Converts one inbound message (a whole value, from <see cref="TrySplit"/>) to the JSON command it stands for: a
    /// top-level <c>data</c> bin becomes <c>"b64"</c>. On failure returns a message fit for a <c>bad_request</c> reply,
    /// and the command's <c>id</c> when it was read before the problem.
    /// </summary>
    public static bool TryToJsonCommand(ReadOnlyMemory<byte> message, out byte[] json, out string? error, out long? id) =>
        TryToJson(message, Path.Command, out json, out error, out id);

    /// <summary>
    /// Converts one server message to JSON (the .NET client's side): the <c>data</c> bin of each publication it carries
    /// becomes <c>"b64"</c>, so the message reads as its <c>herald.json</c> twin.
    /// </summary>
    public static bool TryToJsonServerMessage(ReadOnlyMemory<byte> message, out byte[] json, out string? error) =>
        TryToJson(message, Path.Root, out json, out error, out _);

    private static bool TryToJson(ReadOnlyMemory<byte> message, Path root, out byte[] json, out string? error, out long? id)
    {
        var state = new ConversionState(message, root);
        try
        {
            json = ProtocolWriter.Write(state, static (w, s) => WriteRoot(w, s));
            error = null;
            id = state.Id;
            return true;
        }
        catch (Exception ex) when (ex is InvalidCommandException or MessagePackSerializationException or EndOfStreamException or OverflowException or ArgumentOutOfRangeException)
        {
            json = [];
            error = ex is InvalidCommandException ? ex.Message : "a field has the wrong MessagePack type";
            id = state.Id;
            return false;
        }
    }

    private sealed class ConversionState(ReadOnlyMemory<byte> message, Path root)
    {
        public ReadOnlyMemory<byte> Message { get; } = message;

        public Path Root { get; } = root;

        public long? Id { get; set; }

        public bool BinaryData { get; set; }

        public bool B64 { get; set; }
    }

    private sealed class InvalidCommandException(string message) : Exception(message);

    private static void WriteRoot(Utf8JsonWriter writer, ConversionState state)
    {
        var reader = new MessagePackReader(state.Message);
        if (reader.NextMessagePackType != MessagePackType.Map)
        {
            throw new InvalidCommandException("a command must be a MessagePack map");
        }
        WriteMap(ref reader, writer, 0, state.Root, state);
        if (state.BinaryData && state.B64)
        {
            throw new InvalidCommandException("give either 'data' or 'b64', not both");
        }
    }

    private static void WriteMap(ref MessagePackReader reader, Utf8JsonWriter writer, int depth, Path path, ConversionState state)
    {
        if (depth >= MaxDepth)
        {
            throw new InvalidCommandException($"maps and arrays nest deeper than {MaxDepth} levels");
        }
        var count = reader.ReadMapHeader();
        writer.WriteStartObject();
        for (var i = 0; i < count; i++)
        {
            var key = reader.NextMessagePackType == MessagePackType.String
                ? reader.ReadString()!
                : throw new InvalidCommandException("map keys must be MessagePack strings");
            if (path is Path.Command or Path.Publication && key == "data" && reader.NextMessagePackType == MessagePackType.Binary)
            {
                state.BinaryData |= path == Path.Command;
                var bytes = reader.ReadBytes()!.Value;
                writer.WriteBase64String(ProtocolNames.B64, bytes.IsSingleSegment ? bytes.FirstSpan : bytes.ToArray());
                continue;
            }
            if (path == Path.Command)
            {
                state.B64 |= key == "b64";
                if (key == "id" && reader.NextMessagePackType == MessagePackType.Integer)
                {
                    var id = reader.ReadInt64();
                    state.Id = id;
                    writer.WriteNumber(ProtocolNames.Id, id);
                    continue;
                }
            }
            writer.WritePropertyName(key);
            WriteValue(ref reader, writer, depth + 1, Child(path, key), state);
        }
        writer.WriteEndObject();
    }

    private static void WriteValue(ref MessagePackReader reader, Utf8JsonWriter writer, int depth, Path path, ConversionState state)
    {
        switch (reader.NextMessagePackType)
        {
            case MessagePackType.Nil:
                reader.ReadNil();
                writer.WriteNullValue();
                break;
            case MessagePackType.Boolean:
                writer.WriteBooleanValue(reader.ReadBoolean());
                break;
            case MessagePackType.Integer:
                if (reader.NextCode == MessagePackCode.UInt64)
                {
                    writer.WriteNumberValue(reader.ReadUInt64());
                }
                else
                {
                    writer.WriteNumberValue(reader.ReadInt64());
                }
                break;
            case MessagePackType.Float:
                var number = reader.ReadDouble();
                if (!double.IsFinite(number))
                {
                    throw new InvalidCommandException("NaN and infinities have no JSON form");
                }
                writer.WriteNumberValue(number);
                break;
            case MessagePackType.String:
                writer.WriteStringValue(reader.ReadString());
                break;
            case MessagePackType.Binary:
                throw new InvalidCommandException("a bin is allowed only as a publish's 'data'");
            case MessagePackType.Array:
                if (depth >= MaxDepth)
                {
                    throw new InvalidCommandException($"maps and arrays nest deeper than {MaxDepth} levels");
                }
                var length = reader.ReadArrayHeader();
                var item = path == Path.Publications ? Path.Publication : Path.Plain;
                writer.WriteStartArray();
                for (var i = 0; i < length; i++)
                {
                    WriteValue(ref reader, writer, depth + 1, item, state);
                }
                writer.WriteEndArray();
                break;
            case MessagePackType.Map:
                WriteMap(ref reader, writer, depth, path, state);
                break;
            case MessagePackType.Extension:
                throw new InvalidCommandException("MessagePack extension types are not supported");
            default:
                throw new InvalidCommandException("malformed MessagePack");
        }
    }

    private static byte[] Str(string value)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        writer.Write(value);
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}
