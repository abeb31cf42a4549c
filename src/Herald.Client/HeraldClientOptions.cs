using System.Text.Json;

namespace Herald.Client;

/// <summary>How a <see cref="HeraldClient"/> connects. Immutable: derive variants with <c>with</c>.</summary>
public sealed record HeraldClientOptions
{
    /// <summary>The transport order used when the caller does not choose: WebSocket, then Server-Sent Events, then long poll, then short poll.</summary>
    public static readonly IReadOnlyList<HeraldTransport> DefaultTransports =
        [HeraldTransport.WebSocket, HeraldTransport.Sse, HeraldTransport.LongPoll, HeraldTransport.ShortPoll];

    /// <summary>The server's base address (<c>http://</c> or <c>https://</c>); <c>ws://</c> and <c>wss://</c> are derived from it.</summary>
    public Uri BaseUri { get; init; } = new("http://localhost:8080/");

    /// <summary>
    /// The base addresses of several nodes of one Herald (each <c>http://</c> or <c>https://</c>); when not empty it is
    /// used instead of <see cref="BaseUri"/>. Each connection attempt (the first connect, every reconnect, every
    /// transport switch) takes the next address in turn, starting with the first, so a client whose node goes away
    /// or refuses it reconnects to another one and resumes its subscriptions there with <c>since</c>.
    /// </summary>
    /// <remarks>
    /// One connection stays on one node: a WebSocket for its life, and a polling connection for all its requests until
    /// one fails. Give clients the list in different orders (or put a load balancer in front of the nodes and use
    /// <see cref="BaseUri"/>) to spread them over the nodes.
    /// </remarks>
    public IReadOnlyList<Uri> BaseUris { get; init; } = [];

    /// <summary>A fixed connection token (JWT); <see langword="null"/> for anonymous access.</summary>
    public string? Token { get; init; }

    /// <summary>
    /// Called before every connection attempt and poll request for a fresh token; when set it wins over
    /// <see cref="Token"/>, so that a reconnect never presents an expired token.
    /// </summary>
    public Func<CancellationToken, ValueTask<string?>>? TokenProvider { get; init; }

    /// <summary>
    /// Display information shown as <c>info</c> in this client's presence entries, e.g. <c>{"name":"Ana"}</c>: a JSON
    /// object, sent with <c>connect</c> on a WebSocket and with every poll; <see langword="null"/> for none.
    /// </summary>
    /// <remarks>
    /// A token's <c>info</c> claim wins over it. The server refuses an object whose JSON text is larger than its
    /// <c>Herald:MaxClientInfoBytes</c> (1,024 bytes by default) with <c>payload_too_large</c>; the client then stops
    /// instead of reconnecting (as for refused credentials): <see cref="HeraldClient.ConnectAsync"/> or the
    /// subscriptions fail with that <see cref="HeraldException"/>. The client keeps its own copy, so the element may come
    /// from a <see cref="JsonDocument"/> that is disposed afterwards.
    /// </remarks>
    public JsonElement? Info { get; init; }

    /// <summary>The transports to try, in order. On a failed attempt the client falls back to the next one.</summary>
    public IReadOnlyList<HeraldTransport> Transports { get; init; } = DefaultTransports;

    /// <summary>When set, the client uses only this transport and never falls back.</summary>
    public HeraldTransport? ForcedTransport { get; init; }

    /// <summary>
    /// The WebSocket's subprotocol: <see cref="HeraldProtocol.Json"/> (<c>herald.json</c>, the default) or
    /// <see cref="HeraldProtocol.MsgPack"/> (<c>herald.msgpack</c>: binary publications travel unencoded, and frames are
    /// smaller). The polling transports speak JSON whatever this says.
    /// </summary>
    public HeraldProtocol Protocol { get; init; } = HeraldProtocol.Json;

    /// <summary>The WebSocket endpoint, relative to <see cref="BaseUri"/>.</summary>
    public string WebSocketPath { get; init; } = "ws";

    /// <summary>The polling endpoint, relative to <see cref="BaseUri"/>.</summary>
    public string PollPath { get; init; } = "poll";

    /// <summary>The Server-Sent Events endpoint, relative to <see cref="BaseUri"/>.</summary>
    public string SsePath { get; init; } = "sse";

    /// <summary>The HTTP command endpoint used by the polling and SSE transports, relative to <see cref="BaseUri"/>.</summary>
    public string CommandPath { get; init; } = "cmd";

    /// <summary>How long the server may hold a long poll (at most the server's <c>Herald:MaxPollWait</c>).</summary>
    public TimeSpan LongPollWait { get; init; } = TimeSpan.FromSeconds(25);

    /// <summary>The pause between two short polls.</summary>
    public TimeSpan ShortPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long one connection attempt (handshake plus <c>connect</c>) may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a command (publish, history, presence, subscribe) may wait for its reply.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The first reconnect delay; each failed round doubles it up to <see cref="ReconnectMaxDelay"/>.</summary>
    public TimeSpan ReconnectMinDelay { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>The largest reconnect delay.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// The share of each reconnect delay that is randomized (0 to 1), so that clients dropped together do not
    /// all come back in the same instant.
    /// </summary>
    public double ReconnectJitter { get; init; } = 0.5;

    /// <summary>The WebSocket keep-alive ping interval; a peer that stops answering is detected within about twice this.</summary>
    public TimeSpan WebSocketKeepAliveInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How many publications each subscription buffers for a slow reader before the transport waits for it.</summary>
    public int SubscriptionBufferCapacity { get; init; } = 10_000;

    /// <summary>Validates the options; called by the <see cref="HeraldClient"/> constructor.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (!BaseUri.IsAbsoluteUri || (BaseUri.Scheme != Uri.UriSchemeHttp && BaseUri.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"BaseUri must be an absolute http:// or https:// address, not '{BaseUri}'.", nameof(BaseUri));
        }
        foreach (var uri in BaseUris ?? throw new ArgumentException("BaseUris must not be null (leave it empty to use BaseUri).", nameof(BaseUris)))
        {
            if (uri is null || !uri.IsAbsoluteUri || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                throw new ArgumentException($"Every address in BaseUris must be an absolute http:// or https:// address, not '{uri}'.", nameof(BaseUris));
            }
        }
        if (ForcedTransport is null && (Transports is null || Transports.Count == 0))
        {
            throw new ArgumentException("Transports must name at least one transport (or set ForcedTransport).", nameof(Transports));
        }
        if (LongPollWait <= TimeSpan.Zero || ShortPollInterval < TimeSpan.Zero)
        {
            throw new ArgumentException("LongPollWait must be positive and ShortPollInterval must not be negative.", nameof(LongPollWait));
        }
        if (ReconnectMinDelay < TimeSpan.Zero || ReconnectMaxDelay < ReconnectMinDelay)
        {
            throw new ArgumentException("ReconnectMinDelay must not be negative, and ReconnectMaxDelay must be at least ReconnectMinDelay.", nameof(ReconnectMinDelay));
        }
        if (ReconnectJitter is < 0 or > 1)
        {
            throw new ArgumentException("ReconnectJitter must be between 0 and 1.", nameof(ReconnectJitter));
        }
        if (Info is { ValueKind: not (JsonValueKind.Object or JsonValueKind.Null or JsonValueKind.Undefined) } info)
        {
            throw new ArgumentException($"Info must be a JSON object (or null), not {info.ValueKind}.", nameof(Info));
        }
        if (SubscriptionBufferCapacity < 1)
        {
            throw new ArgumentException("SubscriptionBufferCapacity must be at least 1.", nameof(SubscriptionBufferCapacity));
        }
    }
}
