using Herald;
using Herald.AspNetCore.Hosting;
using Herald.AspNetCore.Security;
using Herald.AspNetCore.WebSockets;
using Herald.Brokers;
using Herald.Handlers;
using Herald.Presence;
using Herald.Sessions;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Herald in an ASP.NET Core application.</summary>
public static class HeraldServiceCollectionExtensions
{
    /// <summary>
    /// Adds Herald: options bound from the <c>Herald</c> configuration section (then <paramref name="configure"/>),
    /// validated at start; the in-memory broker and presence store unless another <see cref="IBroker"/> or
    /// <see cref="IPresenceStore"/> is registered; the node and its <see cref="IHeraldServer"/> (the in-process server API);
    /// ASP.NET Core's health checks (for <c>/healthz</c>).
    /// Map the endpoints with <c>app.MapHerald()</c>.
    /// </summary>
    public static IServiceCollection AddHerald(this IServiceCollection services, Action<HeraldOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<HeraldOptions>().BindConfiguration(HeraldOptions.SectionName);
        if (configure is not null)
        {
            options.Configure(configure);
        }
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<HeraldOptions>, HeraldOptionsValidator>());
        options.ValidateDataAnnotations().ValidateOnStart();

        services.AddOptions<KestrelServerOptions>().Configure<IOptions<HeraldOptions>>((kestrel, herald) =>
        {
            kestrel.Limits.RequestHeadersTimeout = herald.Value.HandshakeTimeout;
            if (herald.Value.WebSocketHandoff)
            {
                // A connection that sends nothing is closed after Kestrel's keep-alive timeout, as the HTTP layer would.
                var handoff = WebSocketHandoff.Middleware(() => kestrel.Limits.KeepAliveTimeout);
                kestrel.ConfigureEndpointDefaults(listen => listen.Use(handoff));
            }
        });
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<IBroker>(sp => new MemoryBroker(sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<IPresenceStore>(sp => new MemoryPresenceStore(
            sp.GetRequiredService<IOptions<HeraldOptions>>().Value, sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<HeraldNode>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<HeraldOptions>>().Value;
            var loggers = sp.GetRequiredService<ILoggerFactory>();
            var handlers = sp.GetServices<IHeraldHandler>().ToArray();
            return new HeraldNode(
                options,
                sp.GetRequiredService<IBroker>(),
                sp.GetService<IConnectAuthenticator>() ?? DefaultAuthenticator(sp),
                loggers,
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<IPresenceStore>())
            {
                Handlers = handlers.Length == 0
                    ? HandlerPipeline.Empty
                    : new HandlerPipeline(handlers, options.HandlerTimeout, loggers.CreateLogger<HandlerPipeline>()),
            };
        });
        services.TryAddSingleton<IHeraldServer>(sp => sp.GetRequiredService<HeraldNode>().Server);
        services.TryAddSingleton<HeraldMarker>();
        services.TryAddEnumerable(ServiceDescriptor.Transient<Microsoft.AspNetCore.Hosting.IStartupFilter, TrustedProxiesStartupFilter>());

        static IConnectAuthenticator? DefaultAuthenticator(IServiceProvider sp)
        {
            var options = sp.GetRequiredService<IOptions<HeraldOptions>>().Value;
            return options.Token.IsConfigured ? new JwtConnectAuthenticator(options, sp.GetRequiredService<TimeProvider>()) : null;
        }
        services.AddHostedService<HeraldHostedService>();
        // /healthz runs the registered health checks; the memory broker needs none (it is always there), a broker on
        // another process registers its own (AddHeraldRedis() adds "redis").
        services.AddHealthChecks();
        return services;
    }

    /// <summary>
    /// Registers an application handler, <typeparamref name="THandler"/>, as a singleton built by the container: Herald
    /// calls it on connect, subscribe, publish, RPC and disconnect, for every transport (see <see cref="IHeraldHandler"/>).
    /// Several may be registered; they are called in registration order. Call beside <c>AddHerald()</c>, in either order.
    /// </summary>
    /// <remarks>Handlers are called concurrently from many connections; for scoped services, create a scope per call.</remarks>
    public static IServiceCollection AddHeraldHandler<THandler>(this IServiceCollection services)
        where THandler : class, IHeraldHandler
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddSingleton<IHeraldHandler, THandler>();
        return services;
    }

    /// <summary>Registers an application handler instance (see <see cref="AddHeraldHandler{THandler}(IServiceCollection)"/>).</summary>
    public static IServiceCollection AddHeraldHandler(this IServiceCollection services, IHeraldHandler handler)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(handler);
        services.AddSingleton(handler);
        return services;
    }
}
