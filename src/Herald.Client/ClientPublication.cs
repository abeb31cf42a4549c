using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Herald.Protocol;

namespace Herald.Client;

/// <summary>A publication received from a channel.</summary>
/// <param name="Channel">The channel it was published to.</param>
/// <param name="Position">Its offset and the epoch of the channel's log.</param>
/// <param name="Data">The JSON payload, parsed; undefined (<c>default</c>) for a binary publication (see <see cref="Bytes"/>).</param>
/// <param name="Info">Who published it, when a client did; <see langword="null"/> for the server API.</param>
public sealed record ClientPublication(string Channel, StreamPosition Position, JsonElement Data, ClientInfo? Info)
{
    /// <summary>The publication's offset in its channel.</summary>
    public ulong Offset => Position.Offset;

    /// <summary>Whether the payload is JSON (<see cref="Data"/>) or bytes (<see cref="Bytes"/>).</summary>
    public PayloadKind Kind { get; init; } = PayloadKind.Json;

    /// <summary>
    /// The payload as bytes: a binary publication's bytes exactly as published (whatever the transport and protocol
    /// carried them as), or a JSON one's compact UTF-8 JSON text.
    /// </summary>
    public ReadOnlyMemory<byte> Bytes
    {
        // A JSON publication's text is made on first use only: most readers want Data, not both.
        get => _bytes ??= Kind == PayloadKind.Json ? JsonSerializer.SerializeToUtf8Bytes(Data, Json.ClientJsonContext.Default.JsonElement) : ReadOnlyMemory<byte>.Empty;
        init => _bytes = value;
    }

    private ReadOnlyMemory<byte>? _bytes;

    /// <summary>Builds a publication from its wire form.</summary>
    internal static ClientPublication FromWire(string channel, StreamPosition position, PublicationMessage message)
    {
        var info = message.Info is { } i ? new ClientInfo(i.User ?? "", i.Client ?? "") : null;
        return message.B64 is { } bytes
            ? new ClientPublication(channel, position, default, info) { Kind = PayloadKind.Binary, Bytes = bytes }
            : new ClientPublication(channel, position, message.Data, info);
    }

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
