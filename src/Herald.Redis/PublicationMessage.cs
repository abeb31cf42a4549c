using System.Buffers.Text;
using System.Text;
using Herald.Protocol;
using StackExchange.Redis;
using ClientInfo = Herald.Protocol.ClientInfo;
using StreamPosition = Herald.Protocol.StreamPosition;

namespace Herald.Redis;

/// <summary>
/// Reads what the broker's publish script sends on a channel's Pub/Sub channel, and the entries of its history stream.
/// </summary>
internal static class PublicationMessage
{
    /// <summary>
    /// Parses <c>"&lt;offset&gt; &lt;epoch&gt; &lt;timestamp&gt; &lt;user bytes&gt; &lt;client bytes&gt;[ b]\n&lt;user&gt;&lt;client&gt;&lt;data&gt;"</c>
    /// (<c>" b"</c>: the data is bytes).
    /// The data is a slice of <paramref name="message"/>, not a copy.
    /// </summary>
    public static bool TryParse(byte[] message, out Publication? publication, out string? epoch)
    {
        publication = null;
        epoch = null;
        var newline = Array.IndexOf(message, (byte)'\n');
        if (newline < 0)
        {
            return false;
        }
        ReadOnlySpan<byte> header = message.AsSpan(0, newline);
        if (!NextUInt64(ref header, out var offset)
            || !NextToken(ref header, out var epochBytes)
            || !NextInt64(ref header, out var timestamp)
            || !NextInt32(ref header, out var userLength)
            || !NextInt32(ref header, out var clientLength))
        {
            return false;
        }
        var kind = PayloadKind.Json;
        if (!header.IsEmpty)
        {
            if (!header.SequenceEqual("b"u8))
            {
                return false;
            }
            kind = PayloadKind.Binary;
        }
        var position = newline + 1;
        ClientInfo? info = null;
        if (userLength >= 0)
        {
            if (clientLength < 0 || (long)position + userLength + clientLength > message.Length)
            {
                return false;
            }
            info = new ClientInfo(
                Encoding.UTF8.GetString(message, position, userLength),
                Encoding.UTF8.GetString(message, position + userLength, clientLength));
            position += userLength + clientLength;
        }
        epoch = Encoding.UTF8.GetString(epochBytes);
        publication = new Publication(offset, message.AsMemory(position), info, timestamp, kind);
        return true;
    }

    /// <summary>
    /// Builds a publication from one history stream entry (<c>id</c> <c>&lt;offset&gt;-0</c>, fields t, d or b, u, c: the
    /// data is in <c>d</c> when it is JSON, in <c>b</c> when it is bytes).
    /// </summary>
    public static Publication FromStreamEntry(RedisResult entry)
    {
        var parts = (RedisResult[])entry!;
        var id = (string)parts[0]!;
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        var offset = ulong.Parse(id.AsSpan(0, dash < 0 ? id.Length : dash), System.Globalization.CultureInfo.InvariantCulture);
        var fields = (RedisResult[])parts[1]!;
        long timestamp = 0;
        byte[] data = [];
        var kind = PayloadKind.Json;
        string? user = null, client = null;
        for (var i = 0; i + 1 < fields.Length; i += 2)
        {
            switch ((string?)fields[i])
            {
                case "t":
                    timestamp = (long)fields[i + 1];
                    break;
                case "d":
                    data = (byte[]?)fields[i + 1] ?? [];
                    break;
                case "b":
                    data = (byte[]?)fields[i + 1] ?? [];
                    kind = PayloadKind.Binary;
                    break;
                case "u":
                    user = (string?)fields[i + 1] ?? "";
                    break;
                case "c":
                    client = (string?)fields[i + 1] ?? "";
                    break;
            }
        }
        var info = user is not null && client is not null ? new ClientInfo(user, client) : null;
        return new Publication(offset, data, info, timestamp, kind);
    }

    private static bool NextToken(ref ReadOnlySpan<byte> header, out ReadOnlySpan<byte> token)
    {
        var space = header.IndexOf((byte)' ');
        token = space < 0 ? header : header[..space];
        header = space < 0 ? [] : header[(space + 1)..];
        return !token.IsEmpty;
    }

    private static bool NextUInt64(ref ReadOnlySpan<byte> header, out ulong value)
    {
        value = 0;
        return NextToken(ref header, out var token) && Utf8Parser.TryParse(token, out value, out var used) && used == token.Length;
    }

    private static bool NextInt64(ref ReadOnlySpan<byte> header, out long value)
    {
        value = 0;
        return NextToken(ref header, out var token) && Utf8Parser.TryParse(token, out value, out var used) && used == token.Length;
    }

    private static bool NextInt32(ref ReadOnlySpan<byte> header, out int value)
    {
        value = 0;
        return NextToken(ref header, out var token) && Utf8Parser.TryParse(token, out value, out var used) && used == token.Length;
    }
}
