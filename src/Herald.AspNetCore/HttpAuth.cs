using Herald.Handlers;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore;

/// <summary>Authenticates plain HTTP clients (polling, <c>/cmd</c>) with the same token rules as <c>connect</c>.</summary>
internal static class HttpAuth
{
    /// <summary>
    /// Returns the user, or writes the refusal (a 401, or the status of a connect handler's error) and returns
    /// <see langword="null"/>. The application's connect handlers, if any, see the authenticator's decision as
    /// <paramref name="transport"/>'s client <paramref name="client"/>, and may replace it.
    /// </summary>
    // queryToken: the `token` query parameter, for the one transport whose browser API cannot send headers
    // (EventSource, /sse); used only when the request has no Authorization header.
    public static async Task<AuthenticationResult?> AuthenticateAsync(HttpContext context, HeraldNode node, string transport, string client, string? queryToken = null)
    {
        var header = context.Request.Headers.Authorization.ToString();
        var token = header.Length == 0 && queryToken is { Length: > 0 } ? queryToken : null;
        if (header.Length > 0)
        {
            if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                await HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "send the token as 'Authorization: Bearer <jwt>'");
                return null;
            }
            token = header["Bearer ".Length..].Trim();
            if (token.Length == 0)
            {
                token = null; // "Bearer" with nothing after it is the same as no token
            }
        }
        var result = await node.Authenticator.AuthenticateAsync(token, context.RequestAborted);
        if (node.Handlers.HandlesConnect)
        {
            var decided = await node.Handlers.ConnectAsync(
                new ConnectContext(client, transport, token, result, new RequestHeaders(context.Request.Headers), context.Connection.RemoteIpAddress?.ToString()),
                context.RequestAborted);
            if (!decided.TryGetValue(out var replaced, out var refusal))
            {
                await HttpErrors.WriteAsync(context, refusal);
                return null;
            }
            result = replaced;
        }
        if (!result.Succeeded)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, result.Error ?? "unauthorized");
            return null;
        }
        return result;
    }
}
