namespace Herald.Protocol;

/// <summary>A position in a channel's ordered log: the offset of a publication inside a log generation (epoch).</summary>
/// <param name="Offset">The offset of the last publication seen; 0 means "before the first publication".</param>
/// <param name="Epoch">The name of the log's generation. Offsets of two different epochs are unrelated.</param>
public readonly record struct StreamPosition(ulong Offset, string Epoch);

/// <summary>
/// Offsets <paramref name="From"/> to <paramref name="To"/> (both included) of a conflated channel that a client was
/// not sent, because a newer publication replaced them while it was behind.
/// </summary>
internal readonly record struct OffsetRange(ulong From, ulong To);
