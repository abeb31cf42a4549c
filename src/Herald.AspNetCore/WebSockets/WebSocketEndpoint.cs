using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.WebSockets;

/// <summary>The <c>/ws</c> endpoint: handshake, then the connection runs until it closes.</summary>
internal static class WebSocketEndpoint
{
    public static async Task HandleAsync(HttpContext context, HeraldNode node, ILogger logger)
    {
        var (ok, subProtocol, key) = await WebSocketHandshake.ValidateAsync(context);
        if (!ok)
        {
            return;
        }
        var stream = await WebSocketHandshake.AcceptAsync(context, key!, subProtocol);
        var connection = new WebSocketConnection(node, context, stream, subProtocol, logger);
        await connection.RunAsync(context.RequestAborted);
    }
}
