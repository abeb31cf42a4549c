using System.ComponentModel.DataAnnotations;

namespace Herald;

/// <summary>
/// Herald's settings, bound from the configuration section <c>Herald</c>. Every limit has a default here and a
/// line in <c>docs/configuration.md</c>.
/// </summary>
public sealed class HeraldOptions
{
    /// <summary>The configuration section these options bind from.</summary>
    public const string SectionName = "Herald";

    /// <summary>The namespace that channels without a <c>namespace:</c> prefix belong to.</summary>
    public const string DefaultNamespace = "default";

    /// <summary>The key the server API (<c>/api/…</c>) requires as <c>Authorization: Bearer</c>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Whether clients may connect without a token. Default <see langword="false"/>.</summary>
    public bool AllowAnonymous { get; set; }

    /// <summary>Browser origins allowed to open WebSockets and make cross-origin polls; empty allows same-host only.</summary>
    public IList<string> AllowedOrigins { get; } = [];

    /// <summary>Connection token settings.</summary>
    public TokenOptions Token { get; set; } = new();

    /// <summary>Namespaces by name. A bare channel name belongs to <see cref="DefaultNamespace"/>, which always exists.</summary>
    public IDictionary<string, NamespaceOptions> Namespaces { get; } =
        new Dictionary<string, NamespaceOptions>(StringComparer.Ordinal);

    /// <summary>Largest inbound WebSocket message, command body or publication payload, in bytes. Default 64 KiB.</summary>
    [Range(256, 64 * 1024 * 1024)]
    public int MaxMessageBytes { get; set; } = 64 * 1024;

    /// <summary>Most channels one connection may be subscribed to at once. Default 128.</summary>
    [Range(1, 100_000)]
    public int MaxSubscriptionsPerConnection { get; set; } = 128;

    /// <summary>Longest channel name, in characters. Default 255.</summary>
    [Range(1, 1024)]
    public int MaxChannelNameLength { get; set; } = 255;

    /// <summary>
    /// How long a client may take to send a request's headers (the WebSocket handshake included) before Kestrel drops
    /// it: the defence against slowloris. Applied to Kestrel's <c>RequestHeadersTimeout</c>. Default 10 s.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a new WebSocket may take to send <c>connect</c> before it is closed with 4001. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the server pings an idle WebSocket. Default 25 s; zero disables keepalive.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>How long the server waits for the pong before it drops the connection as dead. Default 20 s.</summary>
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>How long the server waits for the peer's side of a close handshake before dropping the socket. Default 5 s.</summary>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Most messages waiting to be written to one connection before it is closed as a slow consumer (4002). Default 10,000.</summary>
    [Range(16, 10_000_000)]
    public int MaxQueuedMessages { get; set; } = 10_000;

    /// <summary>
    /// Most publications of one channel handed to this node's fan-out and not yet delivered to its subscribers. A
    /// publication that finds the backlog at the limit means the fan-out has fallen that far behind: the backlog is
    /// dropped (the newest publication stays queued), so the channel's subscribers on this node see a gap and are closed
    /// with 4004, and recover from history. With <see cref="PublishBackpressure"/>, a publish through this node waits
    /// for room instead, and only a backlog of twice the limit (publications from other nodes, which this node cannot
    /// slow down) is dropped. Default 1,000.
    /// </summary>
    [Range(16, 1_000_000)]
    public int MaxDispatchBacklog { get; set; } = 1000;

    /// <summary>
    /// Whether a publish through this node waits, before it is appended, while its channel's fan-out backlog is at
    /// <see cref="MaxDispatchBacklog"/>, so that publishers are slowed to the rate the node can deliver instead of the
    /// backlog being dropped. Default <see langword="false"/>: a publish answers once its publication is in the log,
    /// however far behind the fan-out is, and a fan-out that falls <see cref="MaxDispatchBacklog"/> publications behind
    /// closes the channel's subscribers on this node with 4004 to recover from history.
    /// </summary>
    public bool PublishBackpressure { get; set; }

    /// <summary>Most bytes waiting to be written to one connection before it is closed as a slow consumer (4002). Default 8 MiB.</summary>
    [Range(4096, long.MaxValue)]
    public long MaxQueuedBytes { get; set; } = 8L * 1024 * 1024;

    /// <summary>Most publications one <c>history</c> call returns, and the default when no limit is asked. Default 1,000.</summary>
    [Range(1, 1_000_000)]
    public int MaxHistoryLimit { get; set; } = 1000;

    /// <summary>Most channels one poll may ask about. Default 64.</summary>
    [Range(1, 10_000)]
    public int MaxPollChannels { get; set; } = 64;

    /// <summary>Longest a long poll may be held (the cap on its <c>wait</c>). Default 30 s.</summary>
    public TimeSpan MaxPollWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a polling client that sent a client id stays present in a channel after a poll, beyond the poll's own
    /// <c>wait</c>. Default 15 s.
    /// </summary>
    public TimeSpan PollPresenceTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a node keeps receiving a channel's publications from the broker after the last long poll on it ended,
    /// so that a client polling in a loop does not subscribe and unsubscribe the node each time. Default 30 s.
    /// </summary>
    public TimeSpan PollInterestLinger { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long the WebSocket subscribers of a node stay listed in presence after the node stops refreshing them (it
    /// crashed, or lost the presence store). The node refreshes every third of it. Default 10 s.
    /// </summary>
    public TimeSpan PresenceNodeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a channel remembers a publish's <c>idempotency_key</c>: a repeat of the key within it is answered with the
    /// first publication's position and publishes nothing. Between 1 second and 1 day. Default 5 minutes.
    /// </summary>
    public TimeSpan IdempotencyWindow { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Most polling clients (presence leases) listed in one channel's presence on this node. Default 10,000.</summary>
    [Range(1, 10_000_000)]
    public int MaxPollPresencePerChannel { get; set; } = 10_000;

    /// <summary>Largest client-supplied <c>info</c> (on <c>connect</c> and polls), in bytes of JSON as sent. Default 1,024.</summary>
    [Range(2, 64 * 1024)]
    public int MaxClientInfoBytes { get; set; } = 1024;

    /// <summary>Most commands one connection may send per second (a burst of as many is allowed). Default 200.</summary>
    [Range(1, 1_000_000)]
    public int MaxCommandsPerSecond { get; set; } = 200;

    /// <summary>Most publishes one connection may send per second. Default 50.</summary>
    [Range(1, 1_000_000)]
    public int MaxPublishesPerSecond { get; set; } = 50;

    /// <summary>Most open WebSocket connections on this node. Default 50,000.</summary>
    [Range(1, 10_000_000)]
    public int MaxConnections { get; set; } = 50_000;

    /// <summary>Most open WebSocket connections from one IP address. Default 1,000.</summary>
    [Range(1, 10_000_000)]
    public int MaxConnectionsPerIp { get; set; } = 1_000;

    /// <summary>Most <c>/poll</c> and <c>/cmd</c> requests per second from one IP address. Default 200.</summary>
    [Range(1, 10_000_000)]
    public int MaxHttpRequestsPerSecondPerIp { get; set; } = 200;

    /// <summary>
    /// The reverse proxies whose <c>X-Forwarded-For</c> and <c>X-Forwarded-Proto</c> headers are believed: IP addresses
    /// (<c>127.0.0.1</c>) or CIDR networks (<c>10.0.0.0/8</c>). A request from one of them is taken to come from the
    /// address it forwards, for the per-IP limits and what handlers see. Empty (the default): the headers are ignored and
    /// the TCP peer is the client, so nobody can pick their own address by sending the header.
    /// </summary>
    public IList<string> TrustedProxies { get; } = [];

    /// <summary>
    /// Whether a WebSocket's frames are sent on the connection's socket itself, one <c>send</c> on the thread that has
    /// them, instead of through Kestrel's output pipe and its send loop: less CPU per delivery (docs/benchmarks.md). Only
    /// plain HTTP/1.1 connections on Kestrel's sockets transport qualify (TLS, HTTP/2 and other transports always write
    /// through Kestrel), and only once the client has sent its first bytes, so every frame follows the 101 answer. Off by
    /// default, because a connection middleware of the application's own that wraps the transport (logging, throttling,
    /// a stream of its own) would be bypassed; the standalone server turns it on.
    /// </summary>
    public bool WebSocketDirectSend { get; set; }

    /// <summary>
    /// Whether a WebSocket leaves Kestrel's HTTP layer once its handshake is answered: the handshake request runs as any
    /// request (forwarded headers, origin, limits, checks), then ends at the 101 answer, and the WebSocket runs on the
    /// connection's transport itself, so that nothing of the HTTP/1.1 connection and its request (about 8 KB) stays for
    /// the WebSocket's life (docs/benchmarks.md). Handlers then see a copy of the handshake's headers. Only the first
    /// request of a plain HTTP/1.1 connection to <c>/ws</c> at the root qualifies; over TLS, HTTP/2, under a path prefix or
    /// later on a keep-alive connection the WebSocket stays inside its request. Installed through Kestrel's endpoint
    /// defaults (<c>KestrelServerOptions.ConfigureEndpointDefaults</c>), which an application's own call replaces. Off by
    /// default, because the application's own connection middleware and request-scoped state do not see the connection
    /// after the handshake; the standalone server turns it on.
    /// </summary>
    public bool WebSocketHandoff { get; set; }

    /// <summary>
    /// How long one call of an application handler (connect, subscribe, publish, RPC, disconnect) may take before the
    /// client gets <c>internal</c>. Between 10 ms and 5 minutes. Default 5 s.
    /// </summary>
    public TimeSpan HandlerTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Returns the options of the namespace a channel belongs to, or <see langword="null"/> when it is unknown.</summary>
    internal NamespaceOptions? FindNamespace(string name) =>
        Namespaces.TryGetValue(name, out var ns) ? ns
        : name == DefaultNamespace ? DefaultNamespaceFallback
        : null;

    private static readonly NamespaceOptions DefaultNamespaceFallback = new();

    /// <summary>Reads one <see cref="TrustedProxies"/> entry: an address is a network of one.</summary>
    internal static bool TryParseProxy(string? entry, out System.Net.IPNetwork network)
    {
        var text = entry?.Trim();
        if (System.Net.IPAddress.TryParse(text, out var address))
        {
            network = new System.Net.IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
            return true;
        }
        return System.Net.IPNetwork.TryParse(text, out network);
    }

    /// <summary>Checks the settings that attributes cannot express; returns the problems found.</summary>
    public IEnumerable<string> Validate()
    {
        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            yield return "Herald:HandshakeTimeout must be positive.";
        }
        if (ConnectTimeout <= TimeSpan.Zero)
        {
            yield return "Herald:ConnectTimeout must be positive.";
        }
        if (KeepAliveInterval < TimeSpan.Zero || KeepAliveTimeout < TimeSpan.Zero)
        {
            yield return "Herald:KeepAliveInterval and Herald:KeepAliveTimeout must not be negative.";
        }
        if (MaxPollWait < TimeSpan.Zero || MaxPollWait > TimeSpan.FromMinutes(10))
        {
            yield return "Herald:MaxPollWait must be between 0 and 10 minutes.";
        }
        if (PollPresenceTimeout <= TimeSpan.Zero || PollPresenceTimeout > TimeSpan.FromHours(1))
        {
            yield return "Herald:PollPresenceTimeout must be positive and at most 1 hour.";
        }
        if (PollInterestLinger < TimeSpan.Zero || PollInterestLinger > TimeSpan.FromHours(1))
        {
            yield return "Herald:PollInterestLinger must be between 0 and 1 hour.";
        }
        if (PresenceNodeTimeout < TimeSpan.FromSeconds(1) || PresenceNodeTimeout > TimeSpan.FromHours(1))
        {
            yield return "Herald:PresenceNodeTimeout must be between 1 second and 1 hour.";
        }
        if (IdempotencyWindow < TimeSpan.FromSeconds(1) || IdempotencyWindow > TimeSpan.FromDays(1))
        {
            yield return "Herald:IdempotencyWindow must be between 1 second and 1 day.";
        }
        if (HandlerTimeout < TimeSpan.FromMilliseconds(10) || HandlerTimeout > TimeSpan.FromMinutes(5))
        {
            yield return "Herald:HandlerTimeout must be between 10 milliseconds and 5 minutes.";
        }
        foreach (var proxy in TrustedProxies)
        {
            if (!TryParseProxy(proxy, out _))
            {
                yield return $"Herald:TrustedProxies: '{proxy}' is neither an IP address nor a CIDR network (such as 10.0.0.0/8).";
            }
        }
        if (Token.Secret is { Length: > 0 and < 32 })
        {
            yield return "Herald:Token:Secret must be at least 32 characters (HS256 needs a 256-bit key).";
        }
        if (Token.PublicKeyFile is { Length: > 0 } pem && !File.Exists(pem))
        {
            yield return $"Herald:Token:PublicKeyFile '{pem}' does not exist.";
        }
        if (Token.JwksFile is { Length: > 0 } jwks && !File.Exists(jwks))
        {
            yield return $"Herald:Token:JwksFile '{jwks}' does not exist.";
        }
        if (CloseTimeout <= TimeSpan.Zero)
        {
            yield return "Herald:CloseTimeout must be positive.";
        }
        foreach (var (name, ns) in Namespaces)
        {
            if (!ChannelName.IsValidNamespaceName(name))
            {
                yield return $"Herald:Namespaces:{name}: a namespace name is 1-64 characters of A-Z a-z 0-9 _ - .";
            }
            if (ns.HistorySize < 0 || ns.HistorySize > 1_000_000)
            {
                yield return $"Herald:Namespaces:{name}:HistorySize must be between 0 and 1000000.";
            }
            if (ns.HistoryTtl < TimeSpan.Zero)
            {
                yield return $"Herald:Namespaces:{name}:HistoryTtl must not be negative.";
            }
            if (ns.Conflate && ns.HistorySize < 1)
            {
                yield return $"Herald:Namespaces:{name}:Conflate needs HistorySize of at least 1: polls and resubscribes read the newest publication from history.";
            }
        }
    }
}

/// <summary>Per-namespace channel behaviour: <c>Herald:Namespaces:&lt;ns&gt;:…</c>.</summary>
public sealed class NamespaceOptions
{
    /// <summary>How many recent publications each channel keeps for recovery and history. Default 100; 0 keeps none.</summary>
    public int HistorySize { get; set; } = 100;

    /// <summary>How long a publication stays in history. Default 5 minutes; zero means no time limit.</summary>
    public TimeSpan HistoryTtl { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Whether connected clients may publish (the server API always may). Default <see langword="false"/>.</summary>
    public bool AllowClientPublish { get; set; }

    /// <summary>Whether the namespace tracks and answers presence. Default <see langword="false"/>.</summary>
    public bool Presence { get; set; }

    /// <summary>
    /// Whether subscribing (and reading history and presence) needs a token grant for the channel. Default
    /// <see langword="false"/>: any connected client may subscribe.
    /// </summary>
    public bool RequireGrant { get; set; }

    /// <summary>
    /// Whether channels carry latest-value state (positions, prices, cursors): a subscriber that falls behind, and a poll
    /// or resubscribe whose cursor is behind, gets the channel's newest publication in place of the ones it had not been
    /// sent, and is told which offsets it skipped, instead of being closed as a slow consumer or sent the backlog. Needs
    /// <see cref="HistorySize"/> of at least 1. Default <see langword="false"/>.
    /// </summary>
    public bool Conflate { get; set; }
}

/// <summary>Connection token (JWT) settings: <c>Herald:Token:…</c>.</summary>
public sealed class TokenOptions
{
    /// <summary>The HS256 key that signs connection tokens.</summary>
    public string? Secret { get; set; }

    /// <summary>The required <c>iss</c>, when set.</summary>
    public string? Issuer { get; set; }

    /// <summary>The required <c>aud</c>, when set.</summary>
    public string? Audience { get; set; }

    /// <summary>A PEM file with the RSA or EC public key that verifies RS256 / ES256 tokens.</summary>
    public string? PublicKeyFile { get; set; }

    /// <summary>A JWKS file (<c>{"keys":[…]}</c>) with the public keys that verify RS256 / ES256 tokens.</summary>
    public string? JwksFile { get; set; }

    /// <summary>Tolerated clock difference for <c>exp</c> and <c>nbf</c>. Default 30 s.</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Whether any token validation is configured.</summary>
    internal bool IsConfigured => !string.IsNullOrEmpty(Secret) || !string.IsNullOrEmpty(PublicKeyFile) || !string.IsNullOrEmpty(JwksFile);
}
