using System.Text.Json;

namespace Herald.Protocol;

/// <summary>Parses one command (one line of a frame) into a <see cref="Command"/>.</summary>
internal static class CommandParser
{
    /// <summary>
    /// Parses <paramref name="json"/>. On failure returns <see langword="false"/> with a message fit for a
    /// <see cref="ErrorCodes.BadRequest"/> reply, and the command's <c>id</c> when it could still be read.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> json, out Command command, out string? error, out long? id)
    {
        id = null;
        try
        {
            var parsed = JsonSerializer.Deserialize(json, ProtocolJsonContext.Default.Command);
            if (parsed is null)
            {
                command = new Command();
                error = "a command must be a JSON object";
                return false;
            }
            command = parsed;
            id = parsed.Id;
            if (string.IsNullOrEmpty(parsed.Op))
            {
                error = "the field 'op' is required";
                return false;
            }
            if (parsed.Since is { } since && (since.Offset is null || since.Epoch is null))
            {
                error = "'since' needs both 'offset' (a non-negative integer) and 'epoch' (a string)";
                return false;
            }
            if (parsed.B64 is not null && parsed.Op != Ops.Publish)
            {
                error = "bytes ('b64', or a bin 'data') are only for 'publish'";
                return false;
            }
            error = null;
            return true;
        }
        catch (JsonException ex)
        {
            command = new Command();
            id = TryReadId(json);
            error = ex.Path is { Length: > 1 } path
                ? $"invalid JSON at {path}: {Describe(ex)}"
                : $"invalid JSON: {Describe(ex)}";
            return false;
        }
    }

    private static string Describe(JsonException ex) =>
        ex.InnerException is InvalidOperationException or FormatException
            ? "a field has the wrong type"
            : "malformed or mistyped";

    /// <summary>Best effort: find a top-level numeric <c>id</c> so that the error reply can still be correlated.</summary>
    private static long? TryReadId(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isId = reader.ValueTextEquals("id"u8);
                if (!reader.Read())
                {
                    return null;
                }
                if (isId)
                {
                    return reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) ? value : null;
                }
                reader.Skip();
            }
        }
        catch (JsonException)
        {
        }
        return null;
    }
}
