using System.Text.Json;
using Herald.Brokers;
using Herald.Diagnostics;
using Herald.Presence;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Channels;

/// <summary>
/// The channel rules, once, for every transport and the server API: names and namespaces, permissions and grants,
/// publish, history reads, the recovery decision and presence. Answers in typed results and <see cref="HeraldError"/>s;
/// the WebSocket session, <c>/cmd</c>, <c>/poll</c> and <c>/api/*</c> only map them to frames or HTTP responses.
/// </summary>
/// <remarks>
/// A <see langword="null"/> <see cref="AuthenticationResult"/> is the server itself (the server API, the application's
/// own code): it may publish and read anywhere. A broker that cannot be reached gives <c>unavailable</c>.
/// </remarks>
internal sealed class ChannelService(HeraldOptions options, IBroker broker, IPresenceStore presence, HeraldMetrics metrics, string nodeId, Func<string, CancellationToken, ValueTask>? waitForFanOut = null)
{
    private static readonly HeraldError Unavailable = new(ErrorCodes.Unavailable, "the broker cannot be reached");

    public HeraldOptions Options { get; } = options;

    /// <summary>Checks a channel name and finds its namespace.</summary>
    public static HeraldResult<NamespaceOptions> Resolve(string? channel, HeraldOptions options) =>
        ChannelName.Validate(channel, options, out var ns) is { } problem
            ? new HeraldError(ErrorCodes.InvalidChannel, problem)
            : ns!;

    /// <inheritdoc cref="Resolve(string?, HeraldOptions)"/>
    public HeraldResult<NamespaceOptions> Resolve(string? channel) => Resolve(channel, Options);

    /// <summary>
    /// Whether <paramref name="auth"/> may read <paramref name="channel"/>: subscribe, poll, read history and presence.
    /// <paramref name="action"/> names what was asked, for the message ("polling", "reading", …).
    /// </summary>
    public static HeraldError? AuthorizeRead(AuthenticationResult? auth, string channel, NamespaceOptions ns, string action)
    {
        ArgumentNullException.ThrowIfNull(ns);
        return auth is null || !ns.RequireGrant || auth.CanSubscribe(channel)
            ? null
            : new HeraldError(ErrorCodes.PermissionDenied, $"{action} {channel} needs a grant");
    }

    /// <summary>Resolves a channel and checks that <paramref name="auth"/> may read it.</summary>
    public HeraldResult<NamespaceOptions> ResolveForRead(AuthenticationResult? auth, string? channel, string action)
    {
        if (!Resolve(channel).TryGetValue(out var ns, out var invalid))
        {
            return invalid;
        }
        return AuthorizeRead(auth, channel!, ns, action) is { } denied ? denied : ns;
    }

    /// <summary>Longest <c>idempotency_key</c>, in characters.</summary>
    public const int MaxIdempotencyKeyLength = 128;

    /// <summary>
    /// Publishes JSON <paramref name="data"/> to <paramref name="channel"/>, as <paramref name="info"/> (<see langword="null"/>
    /// for the server). With an <paramref name="idempotencyKey"/> the channel has seen within
    /// <see cref="HeraldOptions.IdempotencyWindow"/>, publishes nothing and answers the first publication's position.
    /// </summary>
    public ValueTask<HeraldResult<StreamPosition>> PublishAsync(AuthenticationResult? auth, string? channel, JsonElement? data, ClientInfo? info, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        if (!CheckPublish(auth, channel, data, idempotencyKey).TryGetValue(out var ns, out var refused))
        {
            return ValueTask.FromResult<HeraldResult<StreamPosition>>(refused);
        }
        return AppendAsync(channel!, ns, CompactJson(data!.Value), PayloadKind.Json, info, idempotencyKey, cancellationToken);
    }

    /// <summary>
    /// Publishes <paramref name="bytes"/> (a binary publication, <see cref="PayloadKind.Binary"/>) to
    /// <paramref name="channel"/>, with the same rules as the JSON <see cref="PublishAsync(AuthenticationResult?, string?, JsonElement?, ClientInfo?, string?, CancellationToken)"/>.
    /// The broker keeps <paramref name="bytes"/> without copying: the caller gives up the memory.
    /// </summary>
    public ValueTask<HeraldResult<StreamPosition>> PublishBytesAsync(AuthenticationResult? auth, string? channel, ReadOnlyMemory<byte> bytes, ClientInfo? info, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        if (!CheckPublishTarget(auth, channel, idempotencyKey).TryGetValue(out var ns, out var refused))
        {
            return ValueTask.FromResult<HeraldResult<StreamPosition>>(refused);
        }
        return AppendAsync(channel!, ns, bytes, PayloadKind.Binary, info, idempotencyKey, cancellationToken);
    }

    private async ValueTask<HeraldResult<StreamPosition>> AppendAsync(string channel, NamespaceOptions ns, ReadOnlyMemory<byte> payload, PayloadKind kind, ClientInfo? info, string? idempotencyKey, CancellationToken cancellationToken)
    {
        // For bytes the limit is on the decoded bytes, whatever encoding (base64, bin, a raw body) carried them.
        if (payload.Length > Options.MaxMessageBytes)
        {
            return TooLarge(Options.MaxMessageBytes);
        }
        if (waitForFanOut is not null)
        {
            // Backpressure before the append, where waiting holds nothing: not the log's lock, not the broker's reader.
            await waitForFanOut(channel, cancellationToken);
        }
        try
        {
            if (idempotencyKey is null)
            {
                var position = await broker.PublishAsync(channel, payload, info, PolicyOf(ns), kind, cancellationToken);
                metrics.Published();
                return position;
            }
            var published = await broker.PublishAsync(channel, payload, info, PolicyOf(ns), new IdempotencyKey(idempotencyKey, Options.IdempotencyWindow), kind, cancellationToken);
            if (!published.Repeated)
            {
                metrics.Published();
            }
            return published.Position;
        }
        catch (BrokerUnavailableException)
        {
            return Unavailable;
        }
    }

    private static HeraldError TooLarge(int max) => new(ErrorCodes.PayloadTooLarge, $"data is larger than {max} bytes");

    /// <summary>
    /// The checks a publication passes before anything else sees it: the channel's name and namespace, the permission to
    /// publish, that there is data, and the <c>idempotency_key</c> if there is one. Returns the namespace, or the refusal.
    /// </summary>
    public HeraldResult<NamespaceOptions> CheckPublish(AuthenticationResult? auth, string? channel, JsonElement? data, string? idempotencyKey = null)
    {
        if (!CheckPublishTarget(auth, channel, idempotencyKey).TryGetValue(out var ns, out var refused))
        {
            return refused;
        }
        if (data is not { } value || value.ValueKind == JsonValueKind.Undefined)
        {
            return new HeraldError(ErrorCodes.BadRequest, "the field 'data' (or 'b64' for bytes) is required");
        }
        return ns;
    }

    /// <summary>The checks of <see cref="CheckPublish"/> that do not look at the payload (a binary one is always there).</summary>
    public HeraldResult<NamespaceOptions> CheckPublishTarget(AuthenticationResult? auth, string? channel, string? idempotencyKey = null)
    {
        if (!Resolve(channel).TryGetValue(out var ns, out var invalid))
        {
            return invalid;
        }
        if (auth is not null && !ns.AllowClientPublish && !auth.CanPublish(channel!))
        {
            return new HeraldError(ErrorCodes.PermissionDenied, $"publish to {channel} is not allowed");
        }
        if (idempotencyKey is not null && ValidateIdempotencyKey(idempotencyKey) is { } badKey)
        {
            return badKey;
        }
        return ns;
    }

    /// <summary>
    /// Reads the bytes of a publish that carries <c>"b64"</c> (JSON commands and <c>/api/publish</c> bodies; a
    /// <c>herald.msgpack</c> bin arrives the same way): <see langword="null"/> when it has none (a JSON publication),
    /// <c>bad_request</c> when it has both <c>data</c> and <c>b64</c> or the base64 is invalid, <c>payload_too_large</c>
    /// when the decoded bytes pass <see cref="HeraldOptions.MaxMessageBytes"/>.
    /// </summary>
    public static HeraldResult<byte[]?> ReadBytes(JsonElement? data, string? b64, int maxBytes)
    {
        if (b64 is null)
        {
            return new HeraldResult<byte[]?>((byte[]?)null);
        }
        if (data is { ValueKind: not JsonValueKind.Undefined })
        {
            return new HeraldError(ErrorCodes.BadRequest, "give either 'data' (JSON) or 'b64' (bytes), not both");
        }
        // Checked before decoding, so an oversized string is never decoded.
        if ((long)b64.Length / 4 * 3 - Padding(b64) > maxBytes)
        {
            return TooLarge(maxBytes);
        }
        var bytes = new byte[b64.Length / 4 * 3];
        if (b64.Length % 4 != 0 || !Convert.TryFromBase64String(b64, bytes, out var written) || b64.AsSpan().ContainsAny(" \t\r\n"))
        {
            return new HeraldError(ErrorCodes.BadRequest, "'b64' is not valid base64 (RFC 4648, with padding)");
        }
        return written == bytes.Length ? bytes : bytes[..written];
    }

    private static int Padding(string b64) => b64.EndsWith("==", StringComparison.Ordinal) ? 2 : b64.EndsWith('=') ? 1 : 0;

    /// <summary>
    /// Checks an <c>idempotency_key</c>: 1-<see cref="MaxIdempotencyKeyLength"/> characters of <c>A-Z a-z 0-9</c> and
    /// <c>_ - . : + / =</c> (enough for UUIDs, ULIDs, base64 and <c>order:42</c>-style keys, and never escaped in a
    /// backend's key name). Returns <c>bad_request</c>, or <see langword="null"/> when it is valid.
    /// </summary>
    public static HeraldError? ValidateIdempotencyKey(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length is 0 or > MaxIdempotencyKeyLength)
        {
            return new HeraldError(ErrorCodes.BadRequest, $"'idempotency_key' must be 1-{MaxIdempotencyKeyLength} characters");
        }
        foreach (var c in key)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('_' or '-' or '.' or ':' or '+' or '/' or '='))
            {
                return new HeraldError(ErrorCodes.BadRequest, "'idempotency_key' may contain only A-Z a-z 0-9 and _ - . : + / =");
            }
        }
        return null;
    }

    /// <summary>
    /// Reads history, at most <paramref name="limit"/> publications (default and ceiling
    /// <see cref="HeraldOptions.MaxHistoryLimit"/>): forward, those after <paramref name="offset"/> oldest first (or the
    /// newest, oldest first); <paramref name="reverse"/>, those before <paramref name="offset"/> newest first (or the newest,
    /// newest first). A cursor that does not fit the channel gives <c>epoch_mismatch</c> or <c>invalid_position</c>.
    /// </summary>
    public async ValueTask<HeraldResult<HistoryPage>> HistoryAsync(AuthenticationResult? auth, string? channel, ulong? offset, string? epoch, int? limit, bool reverse = false, CancellationToken cancellationToken = default)
    {
        if (!ResolveForRead(auth, channel, "reading").TryGetValue(out var ns, out var refused))
        {
            return refused;
        }
        var max = Options.MaxHistoryLimit;
        var count = limit ?? max;
        if (count < 1 || count > max)
        {
            return new HeraldError(ErrorCodes.BadRequest, $"'limit' must be between 1 and {max}");
        }
        HistoryResult history;
        try
        {
            history = reverse
                ? await broker.ReadHistoryBackwardAsync(channel!, offset, count, PolicyOf(ns), cancellationToken)
                : await broker.ReadHistoryAsync(channel!, offset, count, PolicyOf(ns), cancellationToken);
        }
        catch (BrokerUnavailableException)
        {
            return Unavailable;
        }
        if (Recovery.CheckCursor(offset, epoch, history.Position) is { } problem)
        {
            return problem;
        }
        // The next page goes on from the last publication of this one, in the same direction.
        StreamPosition? next = history.More ? history.Position with { Offset = history.Publications[^1].Offset } : null;
        return new HistoryPage(history.Position, history.Publications, next);
    }

    /// <summary>
    /// Works out what a client resuming from <paramref name="since"/> missed (see <see cref="Recovery.Decide"/>), reading
    /// at most <paramref name="limit"/> publications. An offset beyond the head gives <c>invalid_position</c>.
    /// </summary>
    public async ValueTask<HeraldResult<RecoveryResult>> RecoverAsync(string channel, NamespaceOptions ns, StreamPosition? since, int limit, CancellationToken cancellationToken = default)
    {
        HistoryResult read;
        try
        {
            // A conflated channel owes a cursor that is behind only its newest publication: one read of the newest.
            read = since is { } from
                ? await broker.ReadHistoryAsync(channel, ns.Conflate ? null : from.Offset, ns.Conflate ? 1 : limit, PolicyOf(ns), cancellationToken)
                : await broker.ReadHistoryAsync(channel, null, 0, PolicyOf(ns), cancellationToken);
        }
        catch (BrokerUnavailableException)
        {
            return Unavailable;
        }
        var recovery = ns.Conflate ? Recovery.DecideLatest(since, read) : Recovery.Decide(since, read);
        return recovery.InvalidPosition
            ? new HeraldError(ErrorCodes.InvalidPosition, $"offset {since!.Value.Offset} is beyond the channel's head {recovery.Head.Offset}")
            : recovery;
    }

    /// <summary>The clients present in a channel, on every node.</summary>
    public async ValueTask<HeraldResult<IReadOnlyCollection<ClientInfo>>> PresenceAsync(AuthenticationResult? auth, string? channel, CancellationToken cancellationToken = default)
    {
        if (!Resolve(channel).TryGetValue(out var ns, out var invalid))
        {
            return invalid;
        }
        if (!ns.Presence)
        {
            return new HeraldError(ErrorCodes.NotAvailable, $"presence is not enabled for {channel}");
        }
        if (AuthorizeRead(auth, channel!, ns, "presence of") is { } denied)
        {
            return denied;
        }
        try
        {
            return new HeraldResult<IReadOnlyCollection<ClientInfo>>(await presence.ListAsync(channel!, cancellationToken));
        }
        catch (BrokerUnavailableException)
        {
            return Unavailable;
        }
    }

    /// <summary>
    /// Lists a subscribed connection in the channel's presence, when its namespace has presence. <paramref name="pollClient"/>
    /// is the id the same client polled with before (from <c>connect</c>): its lease ends, so it is listed once.
    /// </summary>
    public async ValueTask JoinAsync(string channel, NamespaceOptions ns, ClientInfo member, string? pollClient, CancellationToken cancellationToken = default)
    {
        if (!ns.Presence)
        {
            return;
        }
        await presence.AddAsync(channel, member, nodeId, cancellationToken);
        if (pollClient is not null)
        {
            await presence.EndLeaseAsync(channel, pollClient, member.User, cancellationToken);
        }
    }

    /// <summary>Removes a connection that left the channel from its presence.</summary>
    public ValueTask LeaveAsync(string channel, NamespaceOptions ns, ClientInfo member) =>
        ns.Presence ? presence.RemoveAsync(channel, member.Client) : ValueTask.CompletedTask;

    /// <summary>
    /// Records that a polling client polled <paramref name="channel"/>: it is present until <paramref name="wait"/> plus
    /// <see cref="HeraldOptions.PollPresenceTimeout"/> from now, unless it polls again. Nothing when the namespace has no presence.
    /// </summary>
    public ValueTask<bool> TouchPollPresenceAsync(string channel, NamespaceOptions ns, string client, string user, JsonElement? info, TimeSpan wait) =>
        ns.Presence
            ? presence.TouchLeaseAsync(channel, client, user, info, wait + Options.PollPresenceTimeout)
            : ValueTask.FromResult(false);

    /// <summary>Re-encodes JSON compactly, so that a payload never carries a newline into newline-delimited frames.</summary>
    public static byte[] CompactJson(JsonElement data) => ProtocolWriter.Write(data, static (w, d) => d.WriteTo(w));

    public static HistoryPolicy PolicyOf(NamespaceOptions ns) => new(ns.HistorySize, ns.HistoryTtl);
}

/// <summary>A page of history, as a <c>history</c> reply and <see cref="IHeraldServer.ReadHistoryAsync"/> answer it.</summary>
/// <param name="Head">The channel's head.</param>
/// <param name="Publications">The page, in the order asked (newest first when reversed).</param>
/// <param name="Next">The cursor of the next page in the same direction (its <c>since</c>, or the API's <c>offset</c>), when history holds more.</param>
public sealed record HistoryPage(StreamPosition Head, IReadOnlyList<Publication> Publications, StreamPosition? Next);
