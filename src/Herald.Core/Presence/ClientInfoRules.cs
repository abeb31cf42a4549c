using System.Runtime.InteropServices;
using System.Text.Json;
using Herald.Protocol;

namespace Herald.Presence;

/// <summary>
/// The rules for client-supplied display information (<c>info</c> on <c>connect</c> and on polls) and for client ids
/// that polling clients choose, shared by every transport so that all answer with the same codes.
/// </summary>
internal static class ClientInfoRules
{
    /// <summary>Longest client id a polling client may send.</summary>
    public const int MaxClientIdLength = 64;

    /// <summary>
    /// Checks client-supplied <paramref name="info"/>: a JSON object of at most <see cref="HeraldOptions.MaxClientInfoBytes"/>
    /// bytes of UTF-8 JSON as sent. Returns <see langword="null"/> when it is acceptable, else the error code
    /// (<see cref="ErrorCodes.BadRequest"/> or <see cref="ErrorCodes.PayloadTooLarge"/>) with a message.
    /// </summary>
    public static (string Code, string Message)? Check(JsonElement info, HeraldOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (info.ValueKind != JsonValueKind.Object)
        {
            return (ErrorCodes.BadRequest, "'info' must be a JSON object");
        }
        // The raw bytes as sent: measured without copying, so a valid info costs nothing extra to check.
        if (JsonMarshal.GetRawUtf8Value(info).Length > options.MaxClientInfoBytes)
        {
            return (ErrorCodes.PayloadTooLarge, $"'info' is larger than {options.MaxClientInfoBytes} bytes (Herald:MaxClientInfoBytes)");
        }
        return null;
    }

    /// <summary>
    /// The info that presence shows for a client: the token's <c>info</c> claim when it has one (trusted, so it wins),
    /// else what the client sent (already checked with <see cref="Check"/>).
    /// </summary>
    public static JsonElement? Effective(JsonElement? fromToken, JsonElement? fromClient) => fromToken ?? fromClient;

    /// <summary>Whether <paramref name="client"/> is a valid poll client id: 1 to 64 characters of <c>A-Z a-z 0-9 _ -</c>.</summary>
    public static bool IsValidClientId(ReadOnlySpan<char> client)
    {
        if (client.IsEmpty || client.Length > MaxClientIdLength)
        {
            return false;
        }
        foreach (var c in client)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            {
                return false;
            }
        }
        return true;
    }
}
