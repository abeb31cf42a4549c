using Microsoft.Extensions.Options;

namespace Herald.AspNetCore.Proxy;

/// <summary>Refuses, at start, proxy settings that could only fail later: each problem names its key.</summary>
internal sealed class ProxyOptionsValidator(IOptions<HeraldOptions> herald) : IValidateOptions<ProxyOptions>
{
    /// <summary>The longest <see cref="ProxyOptions.Timeout"/>.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMinutes(1);

    /// <summary>Headers that frame the proxy request itself, so copying the client's would corrupt it.</summary>
    private static readonly HashSet<string> FramingHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding", "Connection", "Keep-Alive",
        "Upgrade", "TE", "Trailer", "Expect", "Proxy-Connection",
    };

    public ValidateOptionsResult Validate(string? name, ProxyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = Problems(options).ToList();
        var handlerTimeout = herald.Value.HandlerTimeout;
        if (options.Timeout > handlerTimeout)
        {
            problems.Add($"Herald:Proxy:Timeout ({options.Timeout}) must not exceed Herald:HandlerTimeout ({handlerTimeout}), which bounds every handler call, the proxy's included; raise Herald:HandlerTimeout too.");
        }
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    private static IEnumerable<string> Problems(ProxyOptions options)
    {
        foreach (var (hook, endpoint) in Hooks(options))
        {
            if (!string.IsNullOrWhiteSpace(endpoint.Url) && ParseUrl(endpoint.Url) is null)
            {
                yield return $"Herald:Proxy:{hook}:Url '{endpoint.Url}' must be an absolute http:// or https:// URL, e.g. 'http://127.0.0.1:3000/herald/{hook.ToLowerInvariant()}'.";
            }
        }
        if (options.Timeout <= TimeSpan.Zero || options.Timeout > MaxTimeout)
        {
            yield return $"Herald:Proxy:Timeout must be positive and at most {MaxTimeout.TotalSeconds:0} s (it is {options.Timeout}).";
        }
        if (options.MaxResponseBytes is < 1024 or > 64 * 1024 * 1024)
        {
            yield return $"Herald:Proxy:MaxResponseBytes must be between 1024 and 67108864 (it is {options.MaxResponseBytes}).";
        }
        foreach (var header in options.ForwardHeaders)
        {
            if (string.IsNullOrEmpty(header) || !header.All(IsTokenChar))
            {
                yield return $"Herald:Proxy:ForwardHeaders: '{header}' is not an HTTP header name.";
            }
            else if (FramingHeaders.Contains(header))
            {
                yield return $"Herald:Proxy:ForwardHeaders: '{header}' frames the proxy request itself and cannot be forwarded.";
            }
        }
    }

    /// <summary>
    /// How long the proxy waits for the backend: <see cref="ProxyOptions.Timeout"/>, but always a little less than
    /// <paramref name="handlerTimeout"/> (250 ms, or a tenth of it when shorter), so that a slow backend is answered with
    /// the proxy's <c>unavailable</c> rather than the handler timeout's <c>internal</c> when both are equal (the defaults).
    /// </summary>
    internal static TimeSpan EffectiveTimeout(TimeSpan timeout, TimeSpan handlerTimeout)
    {
        var margin = TimeSpan.FromTicks(Math.Min(TimeSpan.FromMilliseconds(250).Ticks, handlerTimeout.Ticks / 10));
        var latest = handlerTimeout - margin;
        return timeout < latest ? timeout : latest;
    }

    internal static IEnumerable<(string Hook, ProxyEndpointOptions Endpoint)> Hooks(ProxyOptions options) =>
        [("Connect", options.Connect), ("Subscribe", options.Subscribe), ("Publish", options.Publish), ("Rpc", options.Rpc)];

    /// <summary>The URL of a hook, or <see langword="null"/> when <paramref name="url"/> is not an absolute http(s) URL.</summary>
    internal static Uri? ParseUrl(string? url) =>
        !string.IsNullOrWhiteSpace(url)
        && Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri)
        && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
        && !string.IsNullOrEmpty(uri.Host)
            ? uri
            : null;

    // RFC 9110 token characters.
    private static bool IsTokenChar(char c) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9')
            or '!' or '#' or '$' or '%' or '&' or '\'' or '*' or '+' or '-' or '.' or '^' or '_' or '`' or '|' or '~';
}
