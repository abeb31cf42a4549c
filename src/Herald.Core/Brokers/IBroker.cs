using Herald.Protocol;

namespace Herald.Brokers;

/// <summary>
/// Stores each channel's ordered log (history) and fans publications out to every node that subscribed to the
/// channel. One instance serves one node: the in-memory broker keeps the logs in this process (several nodes in one
/// process share them through one <see cref="MemoryLogStore"/>); a Redis broker keeps them in Redis and serves nodes
/// in many processes.
/// </summary>
/// <remarks>
/// <para>The contract every implementation keeps, and that <c>BrokerConformanceTests</c> checks:</para>
/// <list type="bullet">
/// <item><description><b>Append and publish are atomic per channel; offsets are gap-free within an epoch.</b> Each
/// publication of a channel gets the next offset (1, 2, 3, …) of the channel's current epoch, whatever node or how
/// many concurrent publishers sent it. A channel has one epoch until its log is lost; a new epoch never reuses the
/// old one's name.</description></item>
/// <item><description><b>Order.</b> Every node subscribed to a channel receives its publications in offset order,
/// through <see cref="IBrokerEventHandler.HandlePublication"/>, one call at a time per channel.</description></item>
/// <item><description><b>Subscribing.</b> When <see cref="SubscribeAsync"/> returns, the subscription is active: every
/// publication appended after that moment reaches this node. A node that did not subscribe to a channel (or
/// unsubscribed) receives none of its publications.</description></item>
/// <item><description><b>History.</b> <see cref="ReadHistoryAsync"/> returns the channel's head and the retained
/// publications, consecutive and oldest first, trimmed to the <see cref="HistoryPolicy"/> (size and TTL). A channel
/// never published to reads as offset 0 in the epoch its first publication will have. <see cref="ReadHistoryBackwardAsync"/>
/// reads the same publications newest first. <see cref="HistoryResult.More"/> says whether history holds more past the
/// last publication returned, in the read's direction.</description></item>
/// <item><description><b>Idempotent publish.</b> A publication with an <see cref="IdempotencyKey"/> whose key the
/// channel has already seen within the key's window is not appended or delivered: the call answers the position the
/// first one got, with <see cref="PublishResult.Repeated"/> set. The check and the append are one atomic step, so
/// concurrent repeats through any nodes make one publication and all get its position. The key's memory lives in the
/// broker's backend, so it holds across nodes.</description></item>
/// <item><description><b>Unavailable backend.</b> When the broker cannot reach its backend it throws
/// <see cref="BrokerUnavailableException"/> from the call that needed it, within a bounded time; it never accepts a
/// publication it cannot store and deliver, and never drops one silently.</description></item>
/// <item><description><b>Payload kind.</b> A publication's data is JSON or bytes (<see cref="PayloadKind"/>); the broker
/// stores and delivers both unchanged, and history and delivery give back the kind it was published with.</description></item>
/// <item><description><b>Control messages.</b> <see cref="SendControlAsync"/> hands an opaque message to every started
/// node of the same backend, the sender included, through <see cref="IBrokerEventHandler.HandleControl"/>; each node
/// receives one sender's messages in the order they were sent. Delivery is at most once: a node that cannot reach the
/// backend at that moment misses it (they carry commands about live connections, which a disconnected node cannot
/// serve either).</description></item>
/// </list>
/// A broker never owns connection state: it knows nodes, not clients.
/// </remarks>
public interface IBroker : IAsyncDisposable
{
    /// <summary>Starts the broker for this node; from then on publications of subscribed channels go to <paramref name="handler"/>.</summary>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached.</exception>
    ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends a publication to the channel's log (trimmed to <paramref name="history"/>) and delivers it to every
    /// node subscribed to the channel, as one atomic step.
    /// </summary>
    /// <param name="channel">A valid channel name.</param>
    /// <param name="data">The payload: compact UTF-8 JSON, or bytes (<paramref name="kind"/>); the broker keeps it as is.</param>
    /// <param name="info">Who published it, or <see langword="null"/> for the server.</param>
    /// <param name="history">How much of the log to keep.</param>
    /// <param name="kind">Whether <paramref name="data"/> is JSON or bytes; stored and delivered with it (<see cref="Publication.Kind"/>).</param>
    /// <param name="cancellationToken">Cancels the wait; a publication already sent to the backend may still be appended.</param>
    /// <returns>The new publication's position.</returns>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached; the publication was not accepted.</exception>
    ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default);

    /// <summary>
    /// Like <see cref="PublishAsync(string, ReadOnlyMemory{byte}, ClientInfo?, HistoryPolicy, PayloadKind, CancellationToken)"/>, unless
    /// the channel has seen <paramref name="idempotency"/>'s key within its window: then nothing is appended or delivered,
    /// and the answer is the position the first publication with that key got (even if the channel's epoch has changed
    /// since), with <see cref="PublishResult.Repeated"/> set. Checking the key, appending and remembering the key are one
    /// atomic step.
    /// </summary>
    /// <param name="channel">A valid channel name.</param>
    /// <param name="data">The payload: compact UTF-8 JSON, or bytes (<paramref name="kind"/>); the broker keeps it as is.</param>
    /// <param name="info">Who published it, or <see langword="null"/> for the server.</param>
    /// <param name="history">How much of the log to keep.</param>
    /// <param name="idempotency">The key and how long the channel remembers it.</param>
    /// <param name="kind">Whether <paramref name="data"/> is JSON or bytes.</param>
    /// <param name="cancellationToken">Cancels the wait; a publication already sent to the backend may still be appended.</param>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached; the publication was not accepted.</exception>
    ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey idempotency, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads the channel's current position and the publications after <paramref name="afterOffset"/> still held
    /// in history, oldest first, at most <paramref name="limit"/>. Without an offset, returns the newest
    /// <paramref name="limit"/> publications. The position is never older than the last publication returned.
    /// </summary>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached.</exception>
    ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads the channel's current position and, newest first, at most <paramref name="limit"/> of the publications before
    /// <paramref name="beforeOffset"/> (exclusive) still held in history; without an offset, the newest. The position is
    /// never older than the first publication returned. <see cref="HistoryResult.More"/> says whether history holds
    /// older publications than the last one returned.
    /// </summary>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached.</exception>
    ValueTask<HistoryResult> ReadHistoryBackwardAsync(string channel, ulong? beforeOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default);

    /// <summary>
    /// Asks for this node to receive the channel's publications (node-level, not per client). Active when it returns.
    /// The node calls it once per channel and pairs it with <see cref="UnsubscribeAsync"/>; it never calls both for
    /// the same channel at once.
    /// </summary>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached; the node is not subscribed.</exception>
    ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default);

    /// <summary>Stops this node receiving the channel's publications.</summary>
    ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default);

    /// <summary>
    /// Sends a control message (node to node: disconnect a user, subscribe a user's connections, …) to every started
    /// node on this broker's backend, this one included. The broker does not read it. Returns once the backend took it.
    /// </summary>
    /// <param name="message">The message; the broker copies what it keeps.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="BrokerUnavailableException">The backend cannot be reached; no node received the message.</exception>
    ValueTask SendControlAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default);
}

/// <summary>Receives publications from the broker, in offset order per channel, and control messages from the nodes.</summary>
public interface IBrokerEventHandler
{
    /// <summary>Called for each publication of a channel this node subscribed to, one at a time per channel. Must not block.</summary>
    void HandlePublication(string channel, Publication publication, string epoch);

    /// <summary>
    /// Called for each control message any node sent with <see cref="IBroker.SendControlAsync"/>. Must not block; the
    /// memory is the handler's to keep. A handler that takes none ignores them (the default).
    /// </summary>
    void HandleControl(ReadOnlyMemory<byte> message)
    {
    }
}

/// <summary>How long and how much of a channel's log to keep.</summary>
/// <param name="Size">How many publications to keep; 0 keeps none.</param>
/// <param name="Ttl">How long to keep each; <see cref="TimeSpan.Zero"/> means no time limit.</param>
public readonly record struct HistoryPolicy(int Size, TimeSpan Ttl);

/// <summary>The answer of <see cref="IBroker.ReadHistoryAsync"/> and <see cref="IBroker.ReadHistoryBackwardAsync"/>.</summary>
/// <param name="Position">The channel's current head: the last offset published and the epoch.</param>
/// <param name="Publications">The publications read, in the read's order: oldest first, or newest first when backward.</param>
public sealed record HistoryResult(StreamPosition Position, IReadOnlyList<Publication> Publications)
{
    /// <summary>
    /// Whether history holds publications past the last one returned in the read's direction (newer ones forward, older
    /// ones backward), so that a next page from it would not be empty. <see langword="false"/> when none were returned.
    /// </summary>
    public bool More { get; init; }
}

/// <summary>An idempotent publication's key and how long its channel remembers it.</summary>
/// <param name="Key">The key the publisher chose; a valid one is 1-128 characters of <c>A-Z a-z 0-9 _ - . : + / =</c>.</param>
/// <param name="Window">How long a repeat of the key is answered with the first position (<c>Herald:IdempotencyWindow</c>).</param>
public readonly record struct IdempotencyKey(string Key, TimeSpan Window);

/// <summary>The answer of an idempotent <see cref="IBroker.PublishAsync(string, ReadOnlyMemory{byte}, ClientInfo?, HistoryPolicy, IdempotencyKey, PayloadKind, CancellationToken)"/>.</summary>
/// <param name="Position">The publication's position: the new one's, or the first one's for a repeat.</param>
/// <param name="Repeated">Whether the key was seen within its window, so nothing was published.</param>
public readonly record struct PublishResult(StreamPosition Position, bool Repeated);

/// <summary>
/// The broker cannot reach its backend (Redis down, paused or unreachable). Clients get the error code
/// <c>unavailable</c> (HTTP 503); nothing was accepted or dropped.
/// </summary>
public sealed class BrokerUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BrokerUnavailableException()
        : base("the broker cannot be reached")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public BrokerUnavailableException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the failure behind it.</summary>
    public BrokerUnavailableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
