using System.Collections.Concurrent;
using System.Diagnostics;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// What the standalone server leaves out of every request: ASP.NET Core's per-request diagnostics logger is off by
/// default (no Activity and no logging scope per request unless something listens; configuration turns it back on),
/// and answers carry no <c>Server</c> header.
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
    public async Task TheStandaloneServersAnswers_CarryNoServerHeader()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string> { ["Herald__AllowAnonymous"] = "true" }, StartTimeout);
        Assert.False(server.HasExited, server.Output);

        using var response = await server.Http.GetAsync(new Uri("/poll?channel=diag", UriKind.Relative));
        response.EnsureSuccessStatusCode();
        Assert.False(response.Headers.Contains("Server"), $"Server: {string.Join(",", response.Headers.Server)}");
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

    [Fact]
    public async Task WithoutRequestLogging_AListeningTracer_StillGetsEachPollsActivity_WithItsParentTrace()
    {
        // The test server has no log provider, so the hosting's logger is off, as in the standalone server by default.
        await using var server = await TestServer.StartAsync(o => o.AllowAnonymous = true);
        var traceId = ActivityTraceId.CreateRandom();
        var seen = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Microsoft.AspNetCore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.TraceId == traceId)
                {
                    seen.Enqueue(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        using var request = new HttpRequestMessage(HttpMethod.Get, "/poll?channel=traced");
        request.Headers.Add("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        using var response = await server.Http.SendAsync(request);
        response.EnsureSuccessStatusCode();

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (seen.IsEmpty)
        {
            Assert.True(DateTime.UtcNow < deadline, "no Activity of the poll reached the listener within 10 s");
            await Task.Delay(20);
        }
        Assert.Equal("Microsoft.AspNetCore.Hosting.HttpRequestIn", Assert.Single(seen).OperationName);
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
