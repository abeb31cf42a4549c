using Herald.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Herald.AspNetCore.Hosting;

/// <summary>
/// The body of <c>GET /healthz</c>: <c>{"status":"ok","checks":{…}}</c> while every health check is healthy (200),
/// <c>"degraded"</c> (still 200) or <c>"unhealthy"</c> (503) otherwise, with each check's status and, when it failed,
/// a short reason. Exceptions are logged by the health check service, never written: the endpoint needs no key.
/// </summary>
internal static class HealthResponse
{
    public static Task WriteAsync(HttpContext context, HealthReport report)
    {
        var body = ProtocolWriter.Write(report, static (w, report) =>
        {
            w.WriteStartObject();
            w.WriteString("status", StatusName(report.Status));
            w.WriteStartObject("checks");
            foreach (var (name, entry) in report.Entries)
            {
                w.WriteStartObject(name);
                w.WriteString("status", StatusName(entry.Status));
                if (entry.Status != HealthStatus.Healthy && !string.IsNullOrEmpty(entry.Description))
                {
                    w.WriteString("reason", entry.Description);
                }
                w.WriteNumber("durationMs", Math.Round(entry.Duration.TotalMilliseconds, 1));
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        });
        // The status code is the middleware's (HealthCheckOptions.ResultStatusCodes); only the body is ours.
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = body.Length;
        return context.Response.Body.WriteAsync(body).AsTask();
    }

    /// <summary>"ok" keeps the body the endpoint always had while healthy.</summary>
    private static string StatusName(HealthStatus status) => status switch
    {
        HealthStatus.Healthy => "ok",
        HealthStatus.Degraded => "degraded",
        _ => "unhealthy",
    };
}
