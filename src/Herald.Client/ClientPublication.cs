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
/// <param name="Publications">The publications, oldest first.</param>
public sealed record HistoryResult(StreamPosition Head, IReadOnlyList<ClientPublication> Publications);
