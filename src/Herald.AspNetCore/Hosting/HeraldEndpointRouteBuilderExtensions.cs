using Herald;
using Herald.AspNetCore;
using Herald.AspNetCore.Api;
using Herald.AspNetCore.Hosting;
using Herald.AspNetCore.Polling;
using Herald.AspNetCore.WebSockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps Herald's endpoints.</summary>
public static class HeraldEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps <c>/ws</c>, <c>/poll</c>, <c>/cmd</c>, <c>/api/publish</c>, <c>/api/channels/{channel}/history</c>,
    /// <c>/api/channels/{channel}/presence</c>, <c>/api/stats</c> and <c>/healthz</c>.
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

        endpoints.Map("/ws", context => WebSocketEndpoint.HandleAsync(context, node, logger));
        var pollAnswers = new PollAnswerCache();
        endpoints.MapMethods("/poll", [HttpMethods.Get, HttpMethods.Post], context => PollEndpoint.HandleAsync(context, node, pollAnswers));
        endpoints.MapPost("/cmd", context => CommandEndpoint.HandleAsync(context, node, logger));
        ServerApi.Map(endpoints, node);
        endpoints.MapGet("/healthz", context => HttpErrors.WriteJsonAsync(context, """{"status":"ok"}"""u8.ToArray()));
        return endpoints;
    }
}
