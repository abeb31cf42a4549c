using System.Text;
using System.Text.Json;
using Herald.Channels;
using Herald.Protocol;

namespace Herald;

/// <summary>
/// <see cref="IHeraldServer"/> over one node: the channel rules come from the node's channel service (the server as the
/// caller), the user commands go to every node as control messages through the broker.
/// </summary>
internal sealed class HeraldServer(HeraldNode node) : IHeraldServer
{
    /// <summary>The longest close reason a WebSocket close frame carries (125 bytes less the code).</summary>
    public const int MaxReasonBytes = 123;

    public const string DefaultDisconnectReason = "disconnected by the server";

    public const string DefaultUnsubscribeReason = "unsubscribed by the server";

    public ValueTask<HeraldResult<StreamPosition>> PublishAsync(string channel, JsonElement data, PublishOptions? options = null, CancellationToken cancellationToken = default) =>
        node.Channels.PublishAsync(auth: null, channel, data, info: null, options?.IdempotencyKey, cancellationToken);

    public ValueTask<HeraldResult<StreamPosition>> PublishBytesAsync(string channel, ReadOnlyMemory<byte> bytes, PublishOptions? options = null, CancellationToken cancellationToken = default) =>
        node.Channels.PublishBytesAsync(auth: null, channel, bytes, info: null, options?.IdempotencyKey, cancellationToken);

    public ValueTask<HeraldResult<HistoryPage>> ReadHistoryAsync(string channel, HistoryQuery? query = null, CancellationToken cancellationToken = default) =>
        node.Channels.HistoryAsync(auth: null, channel, query?.Offset, query?.Epoch, query?.Limit, query?.Reverse ?? false, cancellationToken);

    public ValueTask<HeraldResult<IReadOnlyCollection<ClientInfo>>> GetPresenceAsync(string channel, CancellationToken cancellationToken = default) =>
        node.Channels.PresenceAsync(auth: null, channel, cancellationToken);

    public async ValueTask<HeraldError?> DisconnectAsync(string user, int code = CloseCodes.ServerDisconnect, string? reason = null, CancellationToken cancellationToken = default)
    {
        if (CheckUser(user) is { } noUser)
        {
            return noUser;
        }
        if (!CloseCodes.IsApplicationCode(code))
        {
            return new HeraldError(ErrorCodes.BadRequest, $"'code' must be between {CloseCodes.ServerDisconnect} and {CloseCodes.ServerDisconnectMax} (4100–4499: the client reconnects; 4500–4999: it does not)");
        }
        reason ??= DefaultDisconnectReason;
        if (Encoding.UTF8.GetByteCount(reason) > MaxReasonBytes)
        {
            return new HeraldError(ErrorCodes.BadRequest, $"'reason' must be at most {MaxReasonBytes} bytes of UTF-8");
        }
        return await node.SendControlAsync(HeraldNode.EncodeDisconnect(user, code, reason), cancellationToken);
    }

    public async ValueTask<HeraldError?> SubscribeAsync(string user, string channel, StreamPosition? since = null, CancellationToken cancellationToken = default)
    {
        if (CheckUser(user) is { } noUser)
        {
            return noUser;
        }
        if (!node.Channels.Resolve(channel).TryGetValue(out var ns, out var invalid))
        {
            return invalid;
        }
        if (since is { } from)
        {
            if (from.Epoch is null)
            {
                return new HeraldError(ErrorCodes.BadRequest, "'since' needs both 'offset' and 'epoch'");
            }
            // Checked here, once, so the caller hears of a cursor beyond the head; each connection decides recovery itself.
            if (await node.Channels.RecoverAsync(channel, ns, from, 1, cancellationToken) is { Error: { } refused })
            {
                return refused;
            }
        }
        return await node.SendControlAsync(HeraldNode.EncodeSubscribe(user, channel, since), cancellationToken);
    }

    public async ValueTask<HeraldError?> UnsubscribeAsync(string user, string channel, CancellationToken cancellationToken = default)
    {
        if (CheckUser(user) is { } noUser)
        {
            return noUser;
        }
        if (node.Channels.Resolve(channel).Error is { } invalid)
        {
            return invalid;
        }
        return await node.SendControlAsync(HeraldNode.EncodeUnsubscribe(user, channel, DefaultUnsubscribeReason), cancellationToken);
    }

    private static HeraldError? CheckUser(string? user) =>
        string.IsNullOrEmpty(user) ? new HeraldError(ErrorCodes.BadRequest, "'user' is required (anonymous connections cannot be addressed)") : null;
}
