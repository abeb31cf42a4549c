using Herald.Protocol;
using Herald.Sessions;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore;

/// <summary>Authenticates plain HTTP clients (polling, <c>/cmd</c>) with the same token rules as <c>connect</c>.</summary>
internal static class HttpAuth
{
    /// <summary>Returns the user, or writes a 401 and returns <see langword="null"/>.</summary>
    public static async Task<AuthenticationResult?> AuthenticateAsync(HttpContext context, HeraldNode node)
    {
        var header = context.Request.Headers.Authorization.ToString();
        string? token = null;
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
        if (!result.Succeeded)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await HttpErrors.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, result.Error ?? "unauthorized");
            return null;
        }
        return result;
    }
}
