using Herald;
using Herald.Brokers;
using Herald.Presence;
using Herald.Redis;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Puts Herald on Redis: the nodes of every process on one Redis are one Herald.</summary>
public static class HeraldRedisServiceCollectionExtensions
{
    /// <summary>
    /// Uses <see cref="RedisBroker"/> and <see cref="RedisPresenceStore"/> instead of the in-memory ones, on one
    /// connection, with <see cref="RedisBrokerOptions"/> bound from <c>Herald:Redis</c> (then <paramref name="configure"/>)
    /// and validated at start; and the <c>redis</c> health check (<c>/healthz</c> answers 503 while a PING on that
    /// connection fails or takes over 2 s). Call it before or after <c>AddHerald()</c>.
    /// </summary>
    public static IServiceCollection AddHeraldRedis(this IServiceCollection services, Action<RedisBrokerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<RedisBrokerOptions>().BindConfiguration(RedisBrokerOptions.SectionName);
        if (configure is not null)
        {
            options.Configure(configure);
        }
        options
            .Validate(o => !string.IsNullOrWhiteSpace(o.Configuration),
                "Herald:Redis:Configuration must be set to a StackExchange.Redis configuration string (e.g. 'localhost:6379') to use the Redis broker.")
            .Validate(o => !string.IsNullOrEmpty(o.Prefix) && o.Prefix.IndexOfAny(['{', '}']) < 0,
                "Herald:Redis:Prefix must be non-empty and without braces (they are Redis Cluster hash tags).")
            .Validate(o => o.PositionCheckInterval > TimeSpan.Zero,
                "Herald:Redis:PositionCheckInterval must be a positive time span (e.g. '00:00:05').")
            .ValidateOnStart();

        services.TryAddSingleton(sp => new RedisConnection(sp.GetRequiredService<IOptions<RedisBrokerOptions>>().Value.Configuration!));
        // Replace, not TryAdd: AddHerald() registers the in-memory ones with TryAdd, so this works in either order.
        services.Replace(ServiceDescriptor.Singleton<IBroker>(sp => new RedisBroker(
            sp.GetRequiredService<RedisConnection>(),
            sp.GetRequiredService<IOptions<RedisBrokerOptions>>().Value,
            sp.GetService<ILoggerFactory>()?.CreateLogger<RedisBroker>())));
        services.Replace(ServiceDescriptor.Singleton<IPresenceStore>(sp => new RedisPresenceStore(
            sp.GetRequiredService<RedisConnection>(),
            sp.GetRequiredService<IOptions<RedisBrokerOptions>>().Value,
            sp.GetRequiredService<IOptions<HeraldOptions>>().Value)));
        // /healthz answers 503 while Redis cannot be reached. Registered once, however often this is called (the health
        // check service refuses two checks of one name).
        if (!services.Any(d => d.ServiceType == typeof(RedisHealthCheck)))
        {
            services.AddSingleton<RedisHealthCheck>();
            services.AddHealthChecks().AddCheck<RedisHealthCheck>(RedisHealthCheck.Name, HealthStatus.Unhealthy);
        }
        return services;
    }
}
