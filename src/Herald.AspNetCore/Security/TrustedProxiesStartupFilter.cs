using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Options;

namespace Herald.AspNetCore.Security;

/// <summary>
/// Puts ASP.NET Core's forwarded-headers middleware first in the pipeline when <c>Herald:TrustedProxies</c> names
/// proxies, so that the per-IP limits, the handlers' remote address and the request scheme are the client's, not the
/// proxy's — and only for requests that come from those proxies.
/// </summary>
/// <remarks>
/// A startup filter rather than a call in <c>MapHerald()</c>: the client's address must be known before any middleware
/// of the application runs, and endpoint mapping comes too late for that.
/// </remarks>
internal sealed class TrustedProxiesStartupFilter(IOptions<HeraldOptions> options) : IStartupFilter
{
    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        var proxies = options.Value.TrustedProxies;
        if (proxies.Count > 0)
        {
            var forwarded = new ForwardedHeadersOptions
            {
                ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto,
                // Walk X-Forwarded-For from the right while each hop is a trusted proxy (nginx behind a load balancer is
                // two hops); the first address not in the list is the client.
                ForwardLimit = null,
            };
            // The defaults trust loopback; only what is configured is trusted.
            forwarded.KnownProxies.Clear();
            forwarded.KnownIPNetworks.Clear();
            foreach (var proxy in proxies)
            {
                if (HeraldOptions.TryParseProxy(proxy, out var network))
                {
                    forwarded.KnownIPNetworks.Add(network);
                }
            }
            app.UseForwardedHeaders(forwarded);
        }
        next(app);
    };
}
