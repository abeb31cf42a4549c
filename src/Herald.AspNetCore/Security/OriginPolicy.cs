using Herald.Protocol;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore.Security;

/// <summary>
/// Browsers' <c>Origin</c> check against <c>Herald:AllowedOrigins</c>. A request without <c>Origin</c> is not from a
/// browser page and passes. With an empty list only same-origin pages pass (the origin's host and port equal the
/// request's <c>Host</c>); <c>*</c> allows every origin.
/// </summary>
/// <remarks>
/// This is what stops cross-site WebSocket hijacking: a WebSocket handshake carries the visiting browser's cookies
/// but cannot hide its page's origin.
/// </remarks>
internal sealed class OriginPolicy(HeraldOptions options)
{
    private readonly HashSet<string> _allowed = new(options.AllowedOrigins.Select(o => o.TrimEnd('/')), StringComparer.OrdinalIgnoreCase);

    /// <summary>Whether the request's origin (if any) may use Herald.</summary>
    public bool IsAllowed(HttpContext context, out string? origin)
    {
        origin = context.Request.Headers.Origin.Count > 0 ? context.Request.Headers.Origin.ToString() : null;
        if (origin is null || _allowed.Contains("*") || _allowed.Contains(origin))
        {
            return true;
        }
        return _allowed.Count == 0
            && Uri.TryCreate(origin, UriKind.Absolute, out var uri)
            && string.Equals(uri.Authority, context.Request.Host.Value, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Refuses a disallowed origin with 403 <c>forbidden_origin</c>; for an allowed cross-origin request adds the CORS
    /// headers, and answers a preflight. Returns <see langword="true"/> when the caller should go on.
    /// </summary>
    public async Task<bool> ApplyAsync(HttpContext context)
    {
        if (!IsAllowed(context, out var origin))
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status403Forbidden, ErrorCodes.ForbiddenOrigin, $"origin {origin} is not allowed (Herald:AllowedOrigins)");
            return false;
        }
        if (origin is not null)
        {
            var headers = context.Response.Headers;
            headers.AccessControlAllowOrigin = origin;
            headers.Vary = "Origin";
            headers.AccessControlExposeHeaders = "ETag";
            if (HttpMethods.IsOptions(context.Request.Method))
            {
                headers.AccessControlAllowMethods = "GET, POST";
                headers.AccessControlAllowHeaders = "Authorization, Content-Type, If-None-Match";
                headers.AccessControlMaxAge = "600";
                context.Response.StatusCode = StatusCodes.Status204NoContent;
                return false;
            }
        }
        return true;
    }
}
