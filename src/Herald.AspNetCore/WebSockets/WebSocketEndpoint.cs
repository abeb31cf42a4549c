using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.WebSockets;

/// <summary>The <c>/ws</c> endpoint: handshake, then the connection runs until it closes.</summary>
internal static class WebSocketEndpoint
{
    /// <summary>
    /// Answers the handshake; returns the connection to run, or <see langword="null"/> when the request was refused (the
    /// refusal is written). Apart from running it, so that the caller awaits <see cref="WebSocketConnection.RunAsync"/>
    /// itself: a method awaiting both would keep its state machine for the connection's whole life.
    /// </summary>
    public static async ValueTask<WebSocketConnection?> AcceptAsync(HttpContext context, HeraldNode node, WebSocketKeepAlive? keepAlive, ILogger logger)
    {
        var (ok, subProtocol, key) = await WebSocketHandshake.ValidateAsync(context);
        if (!ok)
        {
            return null;
        }
        var stream = await WebSocketHandshake.AcceptAsync(context, key!, subProtocol);
        return new WebSocketConnection(node, context, stream, subProtocol, keepAlive, logger);
    }
}
