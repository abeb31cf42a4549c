using System.Text.Json;
using Herald.Channels;
using Herald.Protocol;

namespace Herald;

/// <summary>
/// The server side of Herald for the application's own code: publish, read history and presence, and act on a user's
/// live connections on every node (disconnect them, subscribe or unsubscribe them to a channel). Inject it where
/// <c>AddHerald()</c> is registered, or take <see cref="HeraldNode.Server"/>. The server API (<c>/api/*</c>) calls the
/// same methods, so the rules and the answers are the same.
/// </summary>
/// <remarks>
/// <para>The caller is the server: it may publish to and read any channel, whatever the namespace allows clients.
/// Each method answers with a value or a <see cref="HeraldError"/> (<c>invalid_channel</c>, <c>bad_request</c>, …;
/// <c>unavailable</c> when the broker cannot be reached); none throws for bad input.</para>
/// <para>The user commands reach every node through the broker and act on the user's WebSocket connections that are
/// connected at that moment; polling clients have no connection to act on. They answer once every node was sent the
/// command, not when each connection has acted on it: a subscribed connection learns of it by a push.</para>
/// <para>Herald implements this interface; it may gain members, so do not implement it.</para>
/// </remarks>
public interface IHeraldServer
{
    /// <summary>Publishes JSON <paramref name="data"/> to <paramref name="channel"/> as the server (no publisher info).</summary>
    /// <returns>The publication's position (the first one's, for a repeated <see cref="PublishOptions.IdempotencyKey"/>),
    /// or <c>invalid_channel</c>, <c>bad_request</c> (no data, a bad idempotency key), <c>payload_too_large</c>,
    /// <c>unavailable</c>.</returns>
    ValueTask<HeraldResult<StreamPosition>> PublishAsync(string channel, JsonElement data, PublishOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Publishes <paramref name="bytes"/> to <paramref name="channel"/> as the server, a binary publication: subscribers
    /// receive the same bytes (a MessagePack <c>bin</c> on <c>herald.msgpack</c>, <c>"b64"</c> in JSON encodings). Herald
    /// keeps the memory without copying it, so do not change it afterwards.
    /// </summary>
    /// <returns>The publication's position, or <c>invalid_channel</c>, <c>bad_request</c> (a bad idempotency key),
    /// <c>payload_too_large</c> (more than <c>Herald:MaxMessageBytes</c> bytes), <c>unavailable</c>.</returns>
    ValueTask<HeraldResult<StreamPosition>> PublishBytesAsync(string channel, ReadOnlyMemory<byte> bytes, PublishOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads a page of <paramref name="channel"/>'s history (see <see cref="HistoryQuery"/>), with the channel's head and,
    /// when history holds more in that direction, where the next page starts.
    /// </summary>
    /// <returns>The page, or <c>invalid_channel</c>, <c>bad_request</c> (a limit outside 1 to
    /// <c>Herald:MaxHistoryLimit</c>), <c>epoch_mismatch</c>, <c>invalid_position</c>, <c>unavailable</c>.</returns>
    ValueTask<HeraldResult<HistoryPage>> ReadHistoryAsync(string channel, HistoryQuery? query = null, CancellationToken cancellationToken = default);

    /// <summary>The clients present in <paramref name="channel"/>, on every node.</summary>
    /// <returns>The members, or <c>invalid_channel</c>, <c>not_available</c> (no presence in its namespace), <c>unavailable</c>.</returns>
    ValueTask<HeraldResult<IReadOnlyCollection<ClientInfo>>> GetPresenceAsync(string channel, CancellationToken cancellationToken = default);

    /// <summary>
    /// Closes every WebSocket connection of <paramref name="user"/>, on every node, with <paramref name="code"/> and
    /// <paramref name="reason"/>. What is already queued for a connection goes out before its close frame.
    /// </summary>
    /// <param name="user">The user (a token's <c>sub</c>); anonymous connections cannot be addressed.</param>
    /// <param name="code">4100–4499: clients reconnect (after their backoff); 4500–4999: clients do not reconnect.
    /// <see cref="CloseCodes.ServerDisconnect"/> by default.</param>
    /// <param name="reason">The close reason, at most 123 bytes of UTF-8; <c>"disconnected by the server"</c> when absent.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns><see langword="null"/> once every node was sent the command; or <c>bad_request</c> (no user, a code
    /// outside 4100–4999, a reason too long), <c>unavailable</c>.</returns>
    ValueTask<HeraldError?> DisconnectAsync(string user, int code = CloseCodes.ServerDisconnect, string? reason = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Subscribes every WebSocket connection of <paramref name="user"/>, on every node, to <paramref name="channel"/>,
    /// whatever the channel's grants say. Each connection gets a subscribe push with the channel's position (and, with
    /// <paramref name="since"/>, what came after it), then the channel's publications; it joins the channel's presence.
    /// A connection already subscribed to the channel is left as it is.
    /// </summary>
    /// <remarks>A client resubscribes by itself after a reconnect, with its cursor, under the normal rules: grant the
    /// channel to the user (token or connect handler) if its namespace needs grants.</remarks>
    /// <returns><see langword="null"/> once every node was sent the command; or <c>bad_request</c> (no user),
    /// <c>invalid_channel</c>, <c>invalid_position</c> (<paramref name="since"/> beyond the head), <c>unavailable</c>.</returns>
    ValueTask<HeraldError?> SubscribeAsync(string user, string channel, StreamPosition? since = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Unsubscribes every WebSocket connection of <paramref name="user"/>, on every node, from <paramref name="channel"/>:
    /// each gets an unsubscribe push, receives no more of the channel and leaves its presence.
    /// </summary>
    /// <returns><see langword="null"/> once every node was sent the command; or <c>bad_request</c> (no user),
    /// <c>invalid_channel</c>, <c>unavailable</c>.</returns>
    ValueTask<HeraldError?> UnsubscribeAsync(string user, string channel, CancellationToken cancellationToken = default);
}

/// <summary>How <see cref="IHeraldServer.PublishAsync"/> publishes.</summary>
public sealed record PublishOptions
{
    /// <summary>
    /// 1–128 characters naming the publication: a repeat of the key on the channel within <c>Herald:IdempotencyWindow</c>
    /// publishes nothing and answers the first publication's position. <see langword="null"/> for none.
    /// </summary>
    public string? IdempotencyKey { get; init; }
}

/// <summary>What <see cref="IHeraldServer.ReadHistoryAsync"/> reads.</summary>
public sealed record HistoryQuery
{
    /// <summary>
    /// The cursor: forward, the publications after it, oldest first; with <see cref="Reverse"/>, those before it, newest
    /// first. <see langword="null"/> for the newest publications.
    /// </summary>
    public ulong? Offset { get; init; }

    /// <summary>The epoch <see cref="Offset"/> belongs to; when given and not the channel's, <c>epoch_mismatch</c>.</summary>
    public string? Epoch { get; init; }

    /// <summary>At most this many; <see langword="null"/> for <c>Herald:MaxHistoryLimit</c>.</summary>
    public int? Limit { get; init; }

    /// <summary>Newest first, going back from <see cref="Offset"/> (or from the head).</summary>
    public bool Reverse { get; init; }
}
