using Herald.Protocol;

namespace Herald.AspNetCore.Polling;

/// <summary>A channel's part of a poll answer: <c>{"epoch":…,"offset":…,"recovered":…,"publications":[…]}</c>.</summary>
/// <param name="Json">The encoded part, shared between polls with the same cursor.</param>
/// <param name="HasNews">Whether the client learns something new (publications, a new position, or a lost window).</param>
/// <param name="InvalidPosition">The cursor is beyond the channel's head.</param>
/// <param name="Head">The channel's head offset.</param>
/// <param name="Publications">The publications encoded in <paramref name="Json"/>, kept to record their delivery latency once written.</param>
internal sealed record ChannelAnswer(ReadOnlyMemory<byte> Json, bool HasNews, bool InvalidPosition, ulong Head, IReadOnlyList<Publication>? Publications = null);

/// <summary>
/// Computes channel answers, and shares them between polls holding the same cursor: when one publication wakes
/// thousands of long polls parked at the same offset, each reads the channel's head but the answer is serialised once.
/// </summary>
/// <remarks>A fixed number of slots, indexed by channel, so the cache never grows with the number of channels.</remarks>
internal sealed class PollAnswerCache
{
    private const int Slots = 1024;
    private readonly Entry?[] _entries = new Entry?[Slots];
    private readonly Entry?[] _idle = new Entry?[Slots];

    public async ValueTask<ChannelAnswer> AnswerAsync(HeraldNode node, PollCursor cursor, CancellationToken cancellationToken)
    {
        if (cursor.Since is not { } since)
        {
            // A first poll: the position, nothing old. Cheap enough not to cache.
            var head = await node.ReadHistoryAsync(cursor.Channel, cursor.Namespace, null, 0, cancellationToken);
            return new ChannelAnswer(Encode(head.Position, recovered: null, []), HasNews: true, InvalidPosition: false, head.Position.Offset);
        }

        var slot = (int)((uint)StringComparer.Ordinal.GetHashCode(cursor.Channel) % Slots);
        // When the broker tells the head at once, an answer already computed for this cursor and head is reused without
        // reading history: one publication wakes every poll parked at the same offset, and each re-poll asks the same.
        if (node.TryPeekHead(cursor.Channel, out var peeked) && Cached(slot, cursor.Channel, since, peeked) is { } hit)
        {
            return hit;
        }
        var history = await node.ReadHistoryAsync(cursor.Channel, cursor.Namespace, since.Offset, node.Options.MaxHistoryLimit, cancellationToken);
        var position = history.Position;
        if (Cached(slot, cursor.Channel, since, position) is { } cached)
        {
            return cached;
        }

        ChannelAnswer answer;
        if (since.Epoch != position.Epoch)
        {
            answer = new(Encode(position, recovered: false, []), HasNews: true, false, position.Offset);
        }
        else if (since.Offset > position.Offset)
        {
            return new(ReadOnlyMemory<byte>.Empty, false, InvalidPosition: true, position.Offset);
        }
        else if (since.Offset == position.Offset)
        {
            answer = new(Encode(position, recovered: true, []), HasNews: false, false, position.Offset);
        }
        else if (history.Publications.Count == 0 || history.Publications[0].Offset != since.Offset + 1)
        {
            // What the client missed has left the history window (size or TTL): say so rather than skip it.
            answer = new(Encode(position, recovered: false, []), HasNews: true, false, position.Offset);
        }
        else
        {
            // The cursor handed back is the last publication included, which is the head unless the limit cut the batch.
            var last = history.Publications[^1].Offset;
            answer = new(Encode(position with { Offset = last }, recovered: true, history.Publications), HasNews: true, false, position.Offset, history.Publications);
        }
        // "Nothing new" answers get their own slots: they alternate with the answers to woken polls all the time.
        var entries = since == position ? _idle : _entries;
        Volatile.Write(ref entries[slot], new Entry(cursor.Channel, since, position, answer));
        return answer;
    }

    private ChannelAnswer? Cached(int slot, string channel, StreamPosition since, StreamPosition head)
    {
        var entries = since == head ? _idle : _entries;
        return Volatile.Read(ref entries[slot]) is { } cached && cached.Channel == channel && cached.Since == since && cached.Head == head
            ? cached.Answer
            : null;
    }

    private static byte[] Encode(StreamPosition position, bool? recovered, IReadOnlyList<Publication> publications) =>
        ProtocolWriter.Write((position, recovered, publications), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteString(ProtocolNames.Epoch, s.position.Epoch);
            w.WriteNumber(ProtocolNames.Offset, s.position.Offset);
            if (s.recovered is { } recovered)
            {
                w.WriteBoolean(ProtocolNames.Recovered, recovered);
            }
            ProtocolWriter.WritePublications(w, s.publications);
            w.WriteEndObject();
        });

    private sealed record Entry(string Channel, StreamPosition Since, StreamPosition Head, ChannelAnswer Answer);
}
