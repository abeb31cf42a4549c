using Herald.AspNetCore.Proxy;
using Herald.Handlers;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Sends the application hooks over HTTP to the application's backend.</summary>
public static class HeraldProxyServiceCollectionExtensions
{
    /// <summary>
    /// Registers the HTTP proxy of hooks as an <see cref="IHeraldHandler"/>: <see cref="ProxyOptions"/> bound from
    /// <c>Herald:Proxy</c> (then <paramref name="configure"/>) and validated at start, and a named
    /// <see cref="HttpClient"/> with pooled connections. Hooks without a URL are left to Herald (and to other handlers).
    /// The standalone server calls it when any <c>Herald:Proxy:&lt;Hook&gt;:Url</c> is set.
    /// </summary>
    public static IServiceCollection AddHeraldProxy(this IServiceCollection services, Action<ProxyOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<ProxyOptions>().BindConfiguration(ProxyOptions.SectionName);
        if (configure is not null)
        {
            options.Configure(configure);
        }
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ProxyOptions>, ProxyOptionsValidator>());
        options.ValidateOnStart();

        services.AddHttpClient(ProxyHandler.HttpClientName, client => client.Timeout = Timeout.InfiniteTimeSpan) // each call has its own deadline
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                // The backend sees the client's cookies only when they are forwarded, never a jar shared by all clients.
                UseCookies = false,
                AllowAutoRedirect = false,
                // Handlers live as long as the app and renew connections themselves, so DNS changes are still seen.
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            })
            .SetHandlerLifetime(Timeout.InfiniteTimeSpan)
            // One log line per hook call would drown the logs; the proxy logs its failures itself.
            .RemoveAllLoggers();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHeraldHandler, ProxyHandler>());
        return services;
    }
}
