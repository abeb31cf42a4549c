using Herald;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore;

/// <summary>Writes Herald's JSON error bodies (<c>{"error":{"code":…,"message":…}}</c>) for HTTP endpoints.</summary>
internal static class HttpErrors
{
    /// <summary>The HTTP status of an error code: the one place where codes meet statuses.</summary>
    public static int StatusOf(string code) => code switch
    {
        ErrorCodes.Unauthorized => StatusCodes.Status401Unauthorized,
        ErrorCodes.PermissionDenied or ErrorCodes.ForbiddenOrigin => StatusCodes.Status403Forbidden,
        ErrorCodes.NotAvailable => StatusCodes.Status404NotFound,
        ErrorCodes.EpochMismatch => StatusCodes.Status409Conflict,
        ErrorCodes.PayloadTooLarge => StatusCodes.Status413PayloadTooLarge,
        ErrorCodes.RateLimited => StatusCodes.Status429TooManyRequests,
        ErrorCodes.Internal => StatusCodes.Status500InternalServerError,
        ErrorCodes.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status400BadRequest,
    };

    /// <summary>Writes a core refusal with its status.</summary>
    public static Task WriteAsync(HttpContext context, HeraldError error) => WriteAsync(context, StatusOf(error.Code), error.Code, error.Message);

    public static Task WriteAsync(HttpContext context, int status, string code, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        var body = ProtocolWriter.Write((code, message), static (w, s) =>
        {
            w.WriteStartObject();
            ProtocolWriter.WriteErrorBody(w, s.code, s.message);
            w.WriteEndObject();
        });
        return context.Response.Body.WriteAsync(body).AsTask();
    }

    public static Task WriteJsonAsync(HttpContext context, byte[] body, int status = StatusCodes.Status200OK)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        context.Response.ContentLength = body.Length;
        return context.Response.Body.WriteAsync(body).AsTask();
    }
}
