namespace Herald.AspNetCore.Proxy;

/// <summary>
/// The HTTP proxy of application hooks: where Herald sends each connect, subscribe, publish and RPC to be decided by
/// the application's backend. Bound from <c>Herald:Proxy</c> and validated at start; see <c>docs/protocol.md</c>
/// ("HTTP proxy of hooks") for the requests and answers.
/// </summary>
public sealed class ProxyOptions
{
    /// <summary>The configuration section these options bind from.</summary>
    public const string SectionName = "Herald:Proxy";

    /// <summary>The default of <see cref="Timeout"/>: 5 s.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The default of <see cref="MaxResponseBytes"/>: 1 MiB.</summary>
    public const int DefaultMaxResponseBytes = 1024 * 1024;

    /// <summary>Where connects go (<c>Herald:Proxy:Connect:Url</c>); without a URL, the token alone decides.</summary>
    public ProxyEndpointOptions Connect { get; set; } = new();

    /// <summary>Where subscribes (and polls of a channel) go (<c>Herald:Proxy:Subscribe:Url</c>); without a URL, Herald's own rules decide.</summary>
    public ProxyEndpointOptions Subscribe { get; set; } = new();

    /// <summary>Where clients' publishes go (<c>Herald:Proxy:Publish:Url</c>); without a URL, Herald's own rules decide.</summary>
    public ProxyEndpointOptions Publish { get; set; } = new();

    /// <summary>Where RPC calls go (<c>Herald:Proxy:Rpc:Url</c>); without a URL, RPC answers <c>not_available</c>.</summary>
    public ProxyEndpointOptions Rpc { get; set; } = new();

    /// <summary>
    /// How long one proxy request may take, from sending to the whole answer read (<c>Herald:Proxy:Timeout</c>,
    /// default 5 s, at most 1 minute and at most <c>Herald:HandlerTimeout</c>). Past it the client gets
    /// <c>unavailable</c>.
    /// </summary>
    public TimeSpan Timeout { get; set; } = DefaultTimeout;

    /// <summary>
    /// Request headers of the client's HTTP request (the WebSocket handshake, or the <c>/cmd</c> or <c>/poll</c>
    /// request) copied onto the connect proxy request, by name (<c>Herald:Proxy:ForwardHeaders</c>, e.g.
    /// <c>Cookie</c>, <c>Authorization</c>, <c>User-Agent</c>). Empty by default. Framing headers (<c>Host</c>,
    /// <c>Content-Length</c>, <c>Content-Type</c>, <c>Transfer-Encoding</c>, <c>Connection</c>, …) cannot be forwarded.
    /// </summary>
    public IList<string> ForwardHeaders { get; } = [];

    /// <summary>
    /// The largest answer body read from the backend, in bytes (<c>Herald:Proxy:MaxResponseBytes</c>, default 1 MiB,
    /// 1 KiB to 64 MiB); a larger one counts as an invalid answer (<c>internal</c>).
    /// </summary>
    public int MaxResponseBytes { get; set; } = DefaultMaxResponseBytes;
}

/// <summary>One proxied hook: <c>Herald:Proxy:&lt;Hook&gt;:…</c>.</summary>
public sealed class ProxyEndpointOptions
{
    /// <summary>The absolute <c>http://</c> or <c>https://</c> URL Herald posts the hook to; empty leaves the hook to Herald.</summary>
    public string? Url { get; set; }
}
