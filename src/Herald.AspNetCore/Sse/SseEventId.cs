using System.Buffers.Text;
using System.Globalization;
using Herald.Protocol;

namespace Herald.AspNetCore.Sse;

/// <summary>
/// The <c>id</c> of a Server-Sent Event: every channel's position on the stream, in the order of the request's
/// <c>channel</c> parameters, so that the <c>Last-Event-ID</c> a reconnecting <c>EventSource</c> sends resumes all of them.
/// </summary>
/// <remarks>
/// <c>&lt;offset&gt;.&lt;epoch&gt;</c> per channel, joined by <c>,</c> (<c>43.7f3a1b2c,0.9e0d4c11</c>); an empty entry
/// is a channel without a position yet (it starts from its head, as without a cursor). Channel names stay in the URL,
/// which the browser repeats on reconnecting, so the id holds only what changes. Offsets are decimal; an epoch is 1 to
/// <see cref="MaxEpochLength"/> printable ASCII characters other than <c>,</c> (Herald's epochs are 8 hex digits).
/// </remarks>
internal static class SseEventId
{
    /// <summary>The longest epoch an id may carry.</summary>
    public const int MaxEpochLength = 64;

    /// <summary>
    /// Parses <paramref name="text"/> into one position (or <see langword="null"/>) per channel; on failure returns
    /// <see langword="false"/> with a message that says what is wrong.
    /// </summary>
    public static bool TryParse(string text, int channels, out StreamPosition?[] positions, out string? error)
    {
        positions = new StreamPosition?[channels];
        error = null;
        var entries = text.Split(',');
        if (entries.Length != channels)
        {
            error = $"Last-Event-ID has {entries.Length} position(s) for {channels} channel(s); send back the id of the last event this stream's URL received";
            return false;
        }
        for (var i = 0; i < entries.Length; i++)
        {
            var entry = entries[i];
            if (entry.Length == 0)
            {
                continue;
            }
            var dot = entry.IndexOf('.', StringComparison.Ordinal);
            if (dot <= 0 || !ulong.TryParse(entry.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
            {
                error = $"Last-Event-ID position {i + 1} must be <offset>.<epoch> with a decimal offset";
                return false;
            }
            var epoch = entry[(dot + 1)..];
            if (epoch.Length is 0 or > MaxEpochLength || !IsEpochText(epoch))
            {
                error = $"Last-Event-ID position {i + 1}: the epoch must be 1 to {MaxEpochLength} printable ASCII characters other than ','";
                return false;
            }
            positions[i] = new StreamPosition(offset, epoch);
        }
        return true;
    }

    /// <summary>The most bytes an id of <paramref name="channels"/> channels takes.</summary>
    public static int MaxLength(int channels) => channels * (20 + 1 + MaxEpochLength + 1);

    /// <summary>Writes one position (nothing when it has none) at <paramref name="at"/>; returns the new end.</summary>
    public static int WritePosition(Span<byte> buffer, int at, ulong offset, ReadOnlySpan<byte> epoch)
    {
        if (epoch.IsEmpty)
        {
            return at;
        }
        Utf8Formatter.TryFormat(offset, buffer[at..], out var written);
        at += written;
        buffer[at++] = (byte)'.';
        epoch.CopyTo(buffer[at..]);
        return at + epoch.Length;
    }

    private static bool IsEpochText(string epoch)
    {
        foreach (var c in epoch)
        {
            if (c is < '!' or > '~' or ',')
            {
                return false;
            }
        }
        return true;
    }
}
