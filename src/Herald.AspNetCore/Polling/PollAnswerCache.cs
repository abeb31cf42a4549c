using Herald.Protocol;

namespace Herald.AspNetCore.Polling;

/// <summary>A channel's part of a poll answer: <c>{"epoch":…,"offset":…,"recovered":…,"publications":[…]}</c>.</summary>
/// <param name="Json">The encoded part, shared between polls with the same cursor.</param>
/// <param name="HasNews">Whether the client learns something new (publications, a new position, or a lost window).</param>
/// <param name="Error">Why the channel cannot be answered (<c>invalid_position</c>, <c>unavailable</c>), or <see langword="null"/>.</param>
/// <param name="Publications">The publications encoded in <paramref name="Json"/>, kept to record their delivery latency once written.</param>
internal sealed record ChannelAnswer(ReadOnlyMemory<byte> Json, bool HasNews, HeraldError? Error = null, IReadOnlyList<Publication>? Publications = null);

/// <summary>
/// Computes channel answers, and shares them between polls holding the same cursor: when one publication wakes
/// thousands of long polls parked at the same offset, each reads the channel's head but the answer is serialised once.
/// What a cursor is owed is the core's decision (<see cref="Channels.ChannelService.RecoverAsync"/>); this only encodes
/// and caches it.
/// </summary>
/// <remarks>A fixed number of slots, indexed by channel, so the cache never grows with the number of channels.</remarks>
internal sealed class PollAnswerCache
{
    private const int Slots = 1024;
    private readonly Entry?[] _entries = new Entry?[Slots];
    private readonly Entry?[] _idle = new Entry?[Slots];

    /// <summary>The answer for one cursor. <paramref name="interest"/> is the poll's parked interest, when it holds one.</summary>
    public async ValueTask<ChannelAnswer> AnswerAsync(HeraldNode node, PollCursor cursor, HeraldNode.PollInterest? interest, CancellationToken cancellationToken)
    {
        var since = cursor.Since;
        var slot = (int)((uint)StringComparer.Ordinal.GetHashCode(cursor.Channel) % Slots);
        // When the node knows the channel's head (it receives the channel's publications), an answer already computed
        // for this cursor and head is reused without reading history: one publication wakes every poll parked at the
        // same offset, and each re-poll asks the same.
        if (since is { } at && node.TryGetKnownHead(cursor.Channel, out var known) && Cached(slot, cursor.Channel, at, known) is { } hit)
        {
            return hit;
        }
        var decided = await node.Channels.RecoverAsync(cursor.Channel, cursor.Namespace, since, node.Options.MaxHistoryLimit, cancellationToken);
        if (!decided.TryGetValue(out var recovery, out var error))
        {
            return new ChannelAnswer(ReadOnlyMemory<byte>.Empty, HasNews: false, error);
        }
        interest?.NoteHead(cursor.Channel, recovery.Head);
        var answer = new ChannelAnswer(Encode(recovery), recovery.HasNews, Publications: recovery.Publications.Count > 0 ? recovery.Publications : null);
        if (since is not { } from)
        {
            return answer; // a first poll: the position, nothing old; cheap enough not to cache
        }
        if (Cached(slot, cursor.Channel, from, recovery.Head) is { } cached)
        {
            return cached;
        }
        // "Nothing new" answers get their own slots: they alternate with the answers to woken polls all the time.
        var entries = from == recovery.Head ? _idle : _entries;
        Volatile.Write(ref entries[slot], new Entry(cursor.Channel, from, recovery.Head, answer));
        return answer;
    }

    private ChannelAnswer? Cached(int slot, string channel, StreamPosition since, StreamPosition head)
    {
        var entries = since == head ? _idle : _entries;
        return Volatile.Read(ref entries[slot]) is { } cached && cached.Channel == channel && cached.Since == since && cached.Head == head
            ? cached.Answer
            : null;
    }

    private static byte[] Encode(Channels.RecoveryResult recovery) =>
        ProtocolWriter.Write(recovery, static (w, r) =>
        {
            w.WriteStartObject();
            Sessions.ChannelCommands.WritePosition(w, r.Position);
            if (r.Recovered is { } recovered)
            {
                w.WriteBoolean(ProtocolNames.Recovered, recovered);
            }
            ProtocolWriter.WritePublications(w, r.Publications);
            if (r.Skipped is { } skipped)
            {
                ProtocolWriter.WriteSkipped(w, skipped);
            }
            w.WriteEndObject();
        });

    private sealed record Entry(string Channel, StreamPosition Since, StreamPosition Head, ChannelAnswer Answer);
}
