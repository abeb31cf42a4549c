using System.Text.RegularExpressions;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class MetricsTests
{
    [Fact]
    public async Task Metrics_ArePrometheusText_AndCountWhatHappened()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"chat:m"}""");
        await server.PublishAsync("chat:m", "1");
        await client.NextPushAsync();
        await client.CommandAsync("""{"op":"fly"}""");
        using var first = System.Text.Json.JsonDocument.Parse(await server.Http.GetStringAsync("/poll?channel=chat:m"));

        using var response = await server.Http.GetAsync("/metrics");
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.ToString());
        var text = await response.Content.ReadAsStringAsync();
        long Sample(string series) => long.Parse(Regex.Match(text, "^" + Regex.Escape(series) + " (\\d+)$", RegexOptions.Multiline).Groups[1].Value);

        Assert.Equal(1, Sample("herald_connections{transport=\"websocket\"}"));
        Assert.Equal(1, Sample("herald_publications_total"));
        Assert.Equal(1, Sample("herald_deliveries_total"));
        Assert.Equal(1, Sample("herald_channels"));
        Assert.Equal(1, Sample("herald_command_errors_total"));
        Assert.Equal(1, Sample("herald_poll_requests_total{result=\"data\"}"));
        Assert.Contains("# TYPE herald_publications_total counter", text);
        // Every line is a comment or "name{labels} value".
        Assert.All(text.Split('\n', StringSplitOptions.RemoveEmptyEntries), line =>
            Assert.Matches("^(# (HELP|TYPE) .+|[a-z_]+(\\{[a-z_]+=\"[a-z_]+\"\\})? \\d+)$", line));
    }
}
