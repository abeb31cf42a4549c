using Herald.AspNetCore.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Herald.AspNetCore.WebSockets;

/// <summary>The <c>/ws</c> endpoint: handshake, then the connection runs until it closes.</summary>
internal static class WebSocketEndpoint
{
    /// <summary>
    /// Serves one request to <c>/ws</c>. The task it returns is the connection's own <see cref="WebSocketConnection.RunAsync"/>
    /// whenever the handshake completes at once (as it does unless the 101 answer has to wait for the socket), so that no
    /// method awaiting the connection keeps a state machine of its own for the connection's whole life.
    /// </summary>
    public static Task HandleAsync(HttpContext context, HeraldNode node, KeepAliveWheel? keepAlive, ILogger logger, OriginPolicy origins, RequestLimits limits)
    {
        if (!origins.IsAllowed(context, out var origin))
        {
            return HttpErrors.WriteAsync(context, StatusCodes.Status403Forbidden, Herald.Protocol.ErrorCodes.ForbiddenOrigin,
                $"origin {origin} is not allowed (Herald:AllowedOrigins)");
        }
        var accepting = AcceptAsync(context, node, keepAlive, logger, limits);
        return accepting.IsCompletedSuccessfully
            ? accepting.Result?.RunAsync() ?? Task.CompletedTask
            : RunWhenAcceptedAsync(accepting);
    }

    private static async Task RunWhenAcceptedAsync(ValueTask<WebSocketConnection?> accepting)
    {
        if (await accepting is { } connection)
        {
            await connection.RunAsync();
        }
    }

    /// <summary>
    /// Takes a connection slot and answers the handshake; returns the connection to run, which owns the slot from then
    /// on, or <see langword="null"/> when the request was refused (the refusal is written, the slot given back) or the
    /// connection was handed off below the HTTP layer (<see cref="WebSocketHandoff"/>), which runs it.
    /// </summary>
    private static async ValueTask<WebSocketConnection?> AcceptAsync(HttpContext context, HeraldNode node, KeepAliveWheel? keepAlive, ILogger logger, RequestLimits limits)
    {
        var slot = await limits.AcquireConnectionAsync(context);
        if (slot is null)
        {
            return null;
        }
        try
        {
            var (ok, subProtocol, key) = await WebSocketHandshake.ValidateAsync(context);
            if (!ok)
            {
                slot.Dispose();
                return null;
            }
            var stream = await WebSocketHandshake.AcceptAsync(context, key!, subProtocol);
            if (context.Features.Get<WebSocketHandoff>() is { } handoff)
            {
                // Below the HTTP layer: the request ends now, and the connection runs once Kestrel has let it go.
                handoff.Accept(new WebSocketConnection(node, handoff, context, subProtocol, keepAlive, logger, slot));
                return null;
            }
            return new WebSocketConnection(node, context, stream, subProtocol, keepAlive, logger, slot);
        }
        catch
        {
            slot.Dispose();
            throw;
        }
    }
}
