using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Herald.Protocol;

namespace Herald.Client;

/// <summary>A publication received from a channel.</summary>
/// <param name="Channel">The channel it was published to.</param>
/// <param name="Position">Its offset and the epoch of the channel's log.</param>
/// <param name="Data">The payload.</param>
/// <param name="Info">Who published it, when a client did; <see langword="null"/> for the server API.</param>
public sealed record ClientPublication(string Channel, StreamPosition Position, JsonElement Data, ClientInfo? Info)
{
    /// <summary>The publication's offset in its channel.</summary>
    public ulong Offset => Position.Offset;

    /// <summary>Deserializes <see cref="Data"/> with source-generated metadata.</summary>
    public T? GetData<T>(JsonTypeInfo<T> typeInfo) => Data.Deserialize(typeInfo);
}

/// <summary>A page of a channel's history.</summary>
/// <param name="Head">The channel's head when the server answered.</param>
/// <param name="Publications">The publications, oldest first (newest first when read in reverse).</param>
public sealed record HistoryResult(StreamPosition Head, IReadOnlyList<ClientPublication> Publications)
{
    /// <summary>
    /// Where the next page in the same direction starts: pass it as <c>since</c> with the same <c>reverse</c>.
    /// <see langword="null"/> when history holds nothing more that way (forward: nothing newer yet).
    /// </summary>
    public StreamPosition? Next { get; init; }
}
