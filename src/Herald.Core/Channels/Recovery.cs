using Herald.Brokers;
using Herald.Protocol;

namespace Herald.Channels;

/// <summary>
/// The recovery decision, in one place: what a client holding a cursor learns from a read of the channel. Subscribe
/// with <c>since</c>, polls and <c>history</c> all decide here.
/// </summary>
internal static class Recovery
{
    /// <summary>
    /// Checks a cursor against the channel's head: <c>epoch_mismatch</c> when the epoch is not the channel's,
    /// <c>invalid_position</c> when the offset is beyond the head. Either part may be absent (not checked).
    /// </summary>
    public static HeraldError? CheckCursor(ulong? offset, string? epoch, StreamPosition head)
    {
        if (epoch is not null && epoch != head.Epoch)
        {
            return new HeraldError(ErrorCodes.EpochMismatch, $"the channel's epoch is {head.Epoch}, not {epoch}");
        }
        return offset > head.Offset
            ? new HeraldError(ErrorCodes.InvalidPosition, $"offset {offset} is beyond the channel's head {head.Offset}")
            : null;
    }

    /// <summary>
    /// Decides what a client resuming from <paramref name="since"/> gets from <paramref name="read"/> (the publications
    /// after <c>since.Offset</c>, possibly cut by a limit): the publications, <c>recovered:true</c>, and the cursor to
    /// go on from (the last publication included, which is the head unless the limit cut the batch); or
    /// <c>recovered:false</c> at the head when the epoch changed or what it missed has left the history window.
    /// </summary>
    public static RecoveryResult Decide(StreamPosition? since, HistoryResult read)
    {
        var head = read.Position;
        if (since is not { } from)
        {
            return new RecoveryResult(head, Recovered: null, [], head);
        }
        switch (CheckCursor(from.Offset, from.Epoch, head)?.Code)
        {
            case ErrorCodes.EpochMismatch:
                // A new epoch is a new log: what the client held is gone, and it is told so.
                return new RecoveryResult(head, Recovered: false, [], head);
            case ErrorCodes.InvalidPosition:
                return new RecoveryResult(head, Recovered: null, [], head, InvalidPosition: true);
        }
        if (from.Offset == head.Offset)
        {
            return new RecoveryResult(head, Recovered: true, [], head);
        }
        var publications = read.Publications;
        if (publications.Count == 0 || publications[0].Offset != from.Offset + 1)
        {
            // What the client missed has left the history window (size or TTL): say so rather than skip it.
            return new RecoveryResult(head, Recovered: false, [], head);
        }
        return new RecoveryResult(head with { Offset = publications[^1].Offset }, Recovered: true, publications, head);
    }

    /// <summary>
    /// The decision for a conflated channel (latest values), from <paramref name="newest"/> (a read of the newest
    /// publication): a cursor that is behind gets the newest publication alone, <c>recovered:true</c>, and the offsets
    /// between as <see cref="RecoveryResult.Skipped"/>; <c>recovered:false</c> when even the newest has left history. The
    /// rest (no cursor, another epoch, beyond the head, nothing new) is <see cref="Decide"/>'s.
    /// </summary>
    public static RecoveryResult DecideLatest(StreamPosition? since, HistoryResult newest)
    {
        var head = newest.Position;
        if (since is not { } from || from.Epoch != head.Epoch || from.Offset >= head.Offset)
        {
            return Decide(since, newest with { Publications = [] });
        }
        if (newest.Publications is not [var latest] || latest.Offset != head.Offset)
        {
            return new RecoveryResult(head, Recovered: false, [], head);
        }
        OffsetRange? skipped = from.Offset + 1 < head.Offset ? new OffsetRange(from.Offset + 1, head.Offset - 1) : null;
        return new RecoveryResult(head, Recovered: true, newest.Publications, head) { Skipped = skipped };
    }
}

/// <summary>The outcome of a recovery decision.</summary>
/// <param name="Position">The cursor the client goes on from: the last publication included, else the channel's head.</param>
/// <param name="Recovered"><see langword="true"/> when every missed publication up to <paramref name="Position"/> is returned; <see langword="false"/> when some are gone; <see langword="null"/> when no position was given.</param>
/// <param name="Publications">The missed publications, oldest first.</param>
/// <param name="Head">The channel's head as read.</param>
/// <param name="InvalidPosition">The given offset is beyond the head of the current epoch.</param>
internal sealed record RecoveryResult(StreamPosition Position, bool? Recovered, IReadOnlyList<Publication> Publications, StreamPosition Head, bool InvalidPosition = false)
{
    /// <summary>A conflated channel's offsets after the cursor that were left out for the newest publication.</summary>
    public OffsetRange? Skipped { get; init; }

    /// <summary>Whether the client learns anything: publications, a first position, or a lost window.</summary>
    public bool HasNews => Recovered != true || Publications.Count > 0;
}
