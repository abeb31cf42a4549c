using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Herald.Bench.Kestrel;

/// <summary>
/// Just enough of Herald's <c>herald.json</c> protocol (docs/protocol.md) for the bench's Herald client and publisher:
/// <c>connect</c> and <c>subscribe</c> commands (one JSON object per line), their results, and pushes.
/// </summary>
internal static class Wire
{
    /// <summary>Floors keep no log, so every channel has one generation.</summary>
    public const string Epoch = "floor";

    /// <summary><c>{"push":{"channel":…,"pub":{"offset":…,"data":…}}}</c>, as Herald encodes a publication.</summary>
    public static byte[] Push(string channel, ulong offset, JsonElement data)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("push");
            w.WriteString("channel", channel);
            w.WriteStartObject("pub");
            w.WriteNumber("offset", offset);
            w.WritePropertyName("data");
            // As the publisher sent it: valid JSON already, since the request body parsed.
            w.WriteRawValue(JsonMarshal.GetRawUtf8Value(data), skipInputValidation: true);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The publish API's answer, <c>{"epoch":…,"offset":…}</c>.</summary>
    public static string Published(ulong offset) =>
        string.Create(CultureInfo.InvariantCulture, $"{{\"epoch\":\"{Epoch}\",\"offset\":{offset}}}");

    /// <summary>
    /// Runs the commands of one client message (one per line) and returns the replies as one message, one per line, or
    /// null when there is nothing to answer. Knows <c>connect</c> and <c>subscribe</c>; anything else gets an error.
    /// </summary>
    public static byte[]? HandleCommands(ReadOnlySpan<byte> message, Hub hub, Subscriber subscriber)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        while (!message.IsEmpty)
        {
            var end = message.IndexOf((byte)'\n');
            var line = end < 0 ? message : message[..end];
            message = end < 0 ? [] : message[(end + 1)..];
            if (line.Trim(" \r\t"u8).IsEmpty)
            {
                continue;
            }
            if (buffer.WrittenCount > 0)
            {
                buffer.Write("\n"u8);
            }
            HandleCommand(line, hub, subscriber, buffer);
        }
        return buffer.WrittenCount > 0 ? buffer.WrittenSpan.ToArray() : null;
    }

    private static void HandleCommand(ReadOnlySpan<byte> line, Hub hub, Subscriber subscriber, ArrayBufferWriter<byte> buffer)
    {
        long? id = null;
        string? op = null;
        string? channel = null;
        var valid = true;
        try
        {
            var reader = new Utf8JsonReader(line);
            while (reader.Read())
            {
                if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1)
                {
                    continue;
                }
                if (reader.ValueTextEquals("id"u8) && reader.Read() && reader.TokenType == JsonTokenType.Number)
                {
                    id = reader.GetInt64();
                }
                else if (reader.ValueTextEquals("op"u8) && reader.Read() && reader.TokenType == JsonTokenType.String)
                {
                    op = reader.GetString();
                }
                else if (reader.ValueTextEquals("channel"u8) && reader.Read() && reader.TokenType == JsonTokenType.String)
                {
                    channel = reader.GetString();
                }
            }
        }
        catch (JsonException)
        {
            valid = false;
        }
        using var w = new Utf8JsonWriter(buffer);
        w.WriteStartObject();
        if (id is { } value)
        {
            w.WriteNumber("id", value);
        }
        switch (op)
        {
            case "connect" when valid:
                w.WriteStartObject("result");
                w.WriteEndObject();
                break;
            case "subscribe" when valid && !string.IsNullOrEmpty(channel):
                var offset = hub.Subscribe(channel, subscriber);
                w.WriteStartObject("result");
                w.WriteString("epoch", Epoch);
                w.WriteNumber("offset", offset);
                w.WriteEndObject();
                break;
            default:
                w.WriteStartObject("error");
                w.WriteString("code", "bad_request");
                w.WriteString("message", "this floor server knows only connect, and subscribe with a channel");
                w.WriteEndObject();
                break;
        }
        w.WriteEndObject();
    }
}
