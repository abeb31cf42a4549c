using Herald;
using Herald.AspNetCore;
using Herald.AspNetCore.Api;
using Herald.AspNetCore.Hosting;
using Herald.AspNetCore.Polling;
using Herald.AspNetCore.Security;
using Herald.AspNetCore.Sse;
using Herald.AspNetCore.WebSockets;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps Herald's endpoints.</summary>
public static class HeraldEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps <c>/ws</c>, <c>/sse</c>, <c>/poll</c>, <c>/cmd</c>, <c>/api/publish</c>, <c>/api/channels/{channel}/history</c>,
    /// <c>/api/channels/{channel}/presence</c>, <c>/api/stats</c>, <c>/metrics</c> and <c>/healthz</c> (the health checks
    /// registered with <c>services.AddHealthChecks()</c>, which <c>AddHerald()</c> calls: 200 while healthy, 503 when not).
    /// </summary>
    public static IEndpointRouteBuilder MapHerald(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<HeraldMarker>() is null)
        {
            throw new InvalidOperationException("Call services.AddHerald() before app.MapHerald().");
        }
        var node = endpoints.ServiceProvider.GetRequiredService<HeraldNode>();
        var logger = endpoints.ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger("Herald.WebSocket");

        var origins = new OriginPolicy(node.Options);
        var limits = new RequestLimits(node.Options, node.TimeProvider);
        var keepAlive = KeepAliveWheel.Create(node.Options, node.TimeProvider);
        if (keepAlive is not null)
        {
            node.Stopping.Register(keepAlive.Dispose);
        }
        endpoints.Map("/ws", context => WebSocketEndpoint.HandleAsync(context, node, keepAlive, logger, origins, limits));
        var sseLogger = endpoints.ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger("Herald.Sse");
        endpoints.MapMethods("/sse", [HttpMethods.Get, HttpMethods.Options], async context =>
        {
            // The origin check of /poll (with CORS for other allowed origins), then a connection slot like a WebSocket's.
            if (await origins.ApplyAsync(context))
            {
                using var slot = await limits.AcquireConnectionAsync(context);
                if (slot is not null)
                {
                    await SseEndpoint.HandleAsync(context, node, keepAlive, sseLogger);
                }
            }
        });
        var pollAnswers = new PollAnswerCache();
        endpoints.MapMethods("/poll", [HttpMethods.Get, HttpMethods.Post, HttpMethods.Options], async context =>
        {
            if (await origins.ApplyAsync(context) && await limits.AllowRequestAsync(context))
            {
                await PollEndpoint.HandleAsync(context, node, pollAnswers);
            }
        });
        endpoints.MapMethods("/cmd", [HttpMethods.Post, HttpMethods.Options], async context =>
        {
            if (await origins.ApplyAsync(context) && await limits.AllowRequestAsync(context))
            {
                await CommandEndpoint.HandleAsync(context, node, logger);
            }
        });
        ServerApi.Map(endpoints, node);
        endpoints.MapGet("/metrics", context => MetricsEndpoint.HandleAsync(context, node));
        // ASP.NET Core's health checks: every check registered (AddHeraldRedis() adds "redis", an application may add
        // its own) decides; healthy or degraded is 200, unhealthy 503. The middleware already sends no-cache headers.
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = HealthResponse.WriteAsync });
        return endpoints;
    }
}
