using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// The standalone server turns ASP.NET Core's per-request diagnostics logger off by default (no Activity and no logging
/// scope per request unless something listens), and configuration turns it back on.
/// </summary>
public sealed class HostingDiagnosticsTests
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    private static Dictionary<string, string> Environment(string? hostingLevel)
    {
        var environment = new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            // Everything else at Trace, so that Kestrel says when each response is complete.
            ["Logging__LogLevel__Default"] = "Trace",
            ["Logging__LogLevel__Microsoft.AspNetCore"] = "Trace",
        };
        if (hostingLevel is not null)
        {
            environment["Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics"] = hostingLevel;
        }
        return environment;
    }

    [Fact]
    public async Task ByDefault_RequestsAreNotLoggedByTheHosting_EvenWithEveryOtherCategoryAtTrace()
    {
        await using var server = await HeraldProcess.StartAsync(Environment(hostingLevel: null), StartTimeout);
        Assert.False(server.HasExited, server.Output);

        using var response = await server.Http.GetAsync(new Uri("/poll?channel=diag", UriKind.Relative));
        response.EnsureSuccessStatusCode();
        // Kestrel logs this once the response is done, after the hosting would have logged the request.
        await WaitForOutputAsync(server, "completed keep alive response");
        Assert.DoesNotContain("Request starting", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Configuration_TurnsTheHostingsRequestLogBackOn()
    {
        await using var server = await HeraldProcess.StartAsync(Environment(hostingLevel: "Information"), StartTimeout);
        Assert.False(server.HasExited, server.Output);

        using var response = await server.Http.GetAsync(new Uri("/poll?channel=diag", UriKind.Relative));
        response.EnsureSuccessStatusCode();
        await WaitForOutputAsync(server, "Request starting HTTP/1.1 GET");
    }

    private static async Task WaitForOutputAsync(HeraldProcess server, string text)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!server.Output.Contains(text, StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the server did not log '{text}' within 10 s:\n{server.Output}");
            await Task.Delay(20);
        }
    }
}
