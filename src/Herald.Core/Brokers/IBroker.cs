using Herald.Protocol;

namespace Herald.Brokers;

/// <summary>
/// Stores each channel's ordered log (history) and fans publications out to every node that subscribed to the
/// channel. The in-memory broker serves one process; a Redis broker (Streams for history, Pub/Sub for fan-out)
/// serves many nodes.
/// </summary>
/// <remarks>
/// Append and publish are atomic per channel; offsets are gap-free within an epoch, and every node receives a
/// channel's publications in offset order. A broker never owns connection state: it knows nodes, not clients.
/// </remarks>
public interface IBroker : IAsyncDisposable
{
    /// <summary>Starts the broker; from then on publications of subscribed channels go to <paramref name="handler"/>.</summary>
    ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default);

    /// <summary>Appends a publication to the channel's log and delivers it to every node subscribed to the channel.</summary>
    /// <returns>The new publication's position.</returns>
    ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads the channel's current position and the publications after <paramref name="afterOffset"/> still held
    /// in history, oldest first, at most <paramref name="limit"/>. Without an offset, returns the newest
    /// <paramref name="limit"/> publications.
    /// </summary>
    ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads the channel's head at once, without I/O or locks, when the broker can (the in-memory one can; a remote
    /// one cannot, and returns <see langword="false"/>). Polls use it to recognise an answer they already computed.
    /// </summary>
    bool TryPeekHead(string channel, out StreamPosition head)
    {
        head = default;
        return false;
    }

    /// <summary>Asks for this node to receive the channel's publications (node-level, not per client).</summary>
    ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default);

    /// <summary>Stops this node receiving the channel's publications.</summary>
    ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default);
}

/// <summary>Receives publications from the broker, in offset order per channel.</summary>
public interface IBrokerEventHandler
{
    /// <summary>Called for each publication of a channel this node subscribed to. Must not block.</summary>
    void HandlePublication(string channel, Publication publication, string epoch);
}

/// <summary>How long and how much of a channel's log to keep.</summary>
/// <param name="Size">How many publications to keep; 0 keeps none.</param>
/// <param name="Ttl">How long to keep each; <see cref="TimeSpan.Zero"/> means no time limit.</param>
public readonly record struct HistoryPolicy(int Size, TimeSpan Ttl);

/// <summary>The answer of <see cref="IBroker.ReadHistoryAsync"/>.</summary>
/// <param name="Position">The channel's current head: the last offset published and the epoch.</param>
/// <param name="Publications">The publications read, oldest first.</param>
public sealed record HistoryResult(StreamPosition Position, IReadOnlyList<Publication> Publications);
