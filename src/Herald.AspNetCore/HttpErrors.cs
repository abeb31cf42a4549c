using Herald.Protocol;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore;

/// <summary>Writes Herald's JSON error bodies (<c>{"error":{"code":…,"message":…}}</c>) for HTTP endpoints.</summary>
internal static class HttpErrors
{
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
