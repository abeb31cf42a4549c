namespace Herald.Protocol;

/// <summary>A position in a channel's ordered log: the offset of a publication inside a log generation (epoch).</summary>
/// <param name="Offset">The offset of the last publication seen; 0 means "before the first publication".</param>
/// <param name="Epoch">The name of the log's generation. Offsets of two different epochs are unrelated.</param>
public readonly record struct StreamPosition(ulong Offset, string Epoch);
