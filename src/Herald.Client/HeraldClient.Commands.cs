using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Herald.Client.Json;
using Herald.Protocol;

namespace Herald.Client;

public sealed partial class HeraldClient
{
    /// <summary>Publishes <paramref name="data"/> to <paramref name="channel"/> over the current transport.</summary>
    /// <param name="channel">The channel.</param>
    /// <param name="data">The payload.</param>
    /// <param name="idempotencyKey">
    /// Makes the publish safe to retry: a repeat with the same key on the same channel within the server's
    /// <c>Herald:IdempotencyWindow</c> (5 minutes by default) publishes nothing and returns the first publication's
    /// position. 1-128 characters of <c>A-Z a-z 0-9 _ - . : + / =</c>, for example a <see cref="Guid"/>.
    /// </param>
    /// <param name="cancellationToken">Cancels the wait for the reply.</param>
    /// <returns>The publication's position.</returns>
    /// <exception cref="HeraldException">The server refused it (<c>permission_denied</c>, <c>payload_too_large</c>, <c>bad_request</c> for a bad key, …).</exception>
    /// <exception cref="HeraldConnectionException">
    /// The connection was lost before the reply; the publication may or may not have been made. Publish again with the
    /// same <paramref name="idempotencyKey"/> to learn its position without publishing it twice.
    /// </exception>
    public async ValueTask<StreamPosition> PublishAsync(string channel, JsonElement data, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var result = await ExecuteAsync(new Command { Op = Ops.Publish, Channel = channel, Data = data, IdempotencyKey = idempotencyKey }, cancellationToken);
        var stream = result.Deserialize(ClientJsonContext.Default.StreamResultMessage);
        return new StreamPosition(stream?.Offset ?? 0, stream?.Epoch ?? "");
    }

    /// <summary>
    /// Publishes <paramref name="bytes"/> to <paramref name="channel"/> as a binary publication: subscribers receive the same
    /// bytes (<see cref="ClientPublication.Bytes"/>). Over <c>herald.msgpack</c> they travel as a MessagePack <c>bin</c>;
    /// over <c>herald.json</c> and polling as base64 (<c>"b64"</c>). The server's <c>Herald:MaxMessageBytes</c> limits them.
    /// </summary>
    /// <inheritdoc cref="PublishAsync(string, JsonElement, string?, CancellationToken)"/>
    public async ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> bytes, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var command = new Command { Op = Ops.Publish, Channel = channel, B64 = Convert.ToBase64String(bytes.Span), IdempotencyKey = idempotencyKey };
        var result = await ExecuteAsync(command, cancellationToken);
        var stream = result.Deserialize(ClientJsonContext.Default.StreamResultMessage);
        return new StreamPosition(stream?.Offset ?? 0, stream?.Epoch ?? "");
    }

    /// <summary>Publishes <paramref name="data"/>, serialized with source-generated metadata.</summary>
    /// <inheritdoc cref="PublishAsync(string, JsonElement, string?, CancellationToken)"/>
    public ValueTask<StreamPosition> PublishAsync<T>(string channel, T data, JsonTypeInfo<T> typeInfo, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(typeInfo);
        return PublishAsync(channel, JsonSerializer.SerializeToElement(data, typeInfo), idempotencyKey, cancellationToken);
    }

    /// <summary>
    /// Reads a page of a channel's history. Forward: after <paramref name="since"/>, oldest first, or the newest
    /// publications. With <paramref name="reverse"/>: before <paramref name="since"/>, newest first, or from the newest.
    /// To walk it all, pass each page's <see cref="HistoryResult.Next"/> as the next <paramref name="since"/> until it is
    /// <see langword="null"/> (forward from the start: <c>since</c> offset 0 in the channel's epoch).
    /// </summary>
    /// <param name="channel">The channel.</param>
    /// <param name="since">The cursor: return what came after it (before it with <paramref name="reverse"/>); <see langword="null"/> for the newest <paramref name="limit"/>.</param>
    /// <param name="limit">At most this many publications; <see langword="null"/> for the server's maximum.</param>
    /// <param name="reverse">Read newest first.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <exception cref="HeraldException">The server refused it (<c>epoch_mismatch</c>, <c>invalid_position</c>, …).</exception>
    public async ValueTask<HistoryResult> HistoryAsync(string channel, StreamPosition? since = null, int? limit = null, bool reverse = false, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var command = new Command
        {
            Op = Ops.History,
            Channel = channel,
            Since = since is { } s ? new SincePosition { Offset = s.Offset, Epoch = s.Epoch } : null,
            Limit = limit,
            Reverse = reverse ? true : null,
        };
        var result = await ExecuteAsync(command, cancellationToken);
        var stream = result.Deserialize(ClientJsonContext.Default.StreamResultMessage)
            ?? throw new HeraldConnectionException("a history reply without a result");
        var epoch = stream.Epoch ?? "";
        var publications = (stream.Publications ?? []).Select(p => ClientPublication.FromWire(channel, new StreamPosition(p.Offset, epoch), p)).ToList();
        return new HistoryResult(new StreamPosition(stream.Offset, epoch), publications)
        {
            Next = stream.Next is { Offset: { } offset, Epoch: { } nextEpoch } ? new StreamPosition(offset, nextEpoch) : null,
        };
    }

    /// <summary>Lists the clients present in a channel on the node that answers, keyed by client id.</summary>
    /// <remarks>
    /// WebSocket clients are listed while subscribed, under their server-assigned id; polling clients (this client's
    /// <see cref="ClientId"/>) from their poll of the channel until the poll's wait plus the server's
    /// <c>Herald:PollPresenceTimeout</c> (15 s by default) have passed. Each entry's <see cref="ClientInfo.Info"/> is the
    /// client's display information (a token's <c>info</c> claim, else <see cref="HeraldClientOptions.Info"/>), or
    /// <see langword="null"/>.
    /// </remarks>
    /// <exception cref="HeraldException">The server refused it (<c>not_available</c> when the namespace has no presence, …).</exception>
    public async ValueTask<IReadOnlyDictionary<string, ClientInfo>> PresenceAsync(string channel, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var result = await ExecuteAsync(new Command { Op = Ops.Presence, Channel = channel }, cancellationToken);
        var presence = result.Deserialize(ClientJsonContext.Default.PresenceAnswerMessage)?.Presence ?? new Dictionary<string, ClientInfoMessage>();
        return presence.ToDictionary(p => p.Key, p => new ClientInfo(p.Value.User ?? "", p.Value.Client ?? p.Key)
        {
            Info = p.Value.Info is { ValueKind: JsonValueKind.Object } info ? info : null,
        }, StringComparer.Ordinal);
    }

    /// <summary>Sends a command over the current transport, waiting for one if the client is between connections.</summary>
    private async Task<JsonElement> ExecuteAsync(Command command, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.CommandTimeout);
        try
        {
            var transport = await WaitForTransportAsync(timeout.Token);
            return await transport.CommandAsync(command, timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"'{command.Op}' got no reply within {Options.CommandTimeout.TotalSeconds:0.#} s.");
        }
    }
}
