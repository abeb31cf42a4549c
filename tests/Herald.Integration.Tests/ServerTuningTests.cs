using System.Net.Http.Headers;
using System.Text;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// The standalone server's tuning of the platform. Its sockets transport: inline scheduling on by default (a fan-out's
/// sends must not queue ahead of a publish request's read), <c>Kestrel:Sockets</c> bound to Kestrel's
/// <c>SocketTransportOptions</c>, and a value that is not one refused at start, naming the key. The rest of the
/// integration suite runs once more with inline scheduling on (<c>HERALD_TEST_INLINE_SCHEDULING=1</c> in <c>test.sh</c>).
/// Its thread pool: no spin-wait, from <c>herald.runtimeconfig.json</c>; its garbage collector: Workstation unless the
/// environment asks for Server.
/// </summary>
public sealed class ServerTuningTests
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    private const string ApiKey = "sockets-transport-test-key-0123456789";

    [Fact]
    public async Task ByDefault_InlineSchedulingIsOn_AndAPublicationReachesAWebSocketSubscriber()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__ApiKey"] = ApiKey,
        }, StartTimeout);
        Assert.False(server.HasExited, server.Output);
        Assert.Contains("inline scheduling True", server.Output, StringComparison.Ordinal);

        await using var client = await WsClient.OpenAsync(server.WebSocketUri);
        Assert.True((await client.CommandAsync("""{"op":"connect"}""")).TryGetProperty("result", out _));
        Assert.True((await client.CommandAsync("""{"op":"subscribe","channel":"inline"}""")).TryGetProperty("result", out _));

        using var publish = new HttpRequestMessage(HttpMethod.Post, "/api/publish")
        {
            Content = new StringContent("""{"channel":"inline","data":{"n":1}}""", Encoding.UTF8, "application/json"),
        };
        publish.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        using var response = await server.Http.SendAsync(publish);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());

        var push = await client.NextPushAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, push.GetProperty("push").GetProperty("pub").GetProperty("data").GetProperty("n").GetInt32());
    }

    [Fact]
    public async Task Configuration_TurnsInlineSchedulingOff()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Kestrel__Sockets__UnsafePreferInlineScheduling"] = "false",
        }, StartTimeout);
        Assert.False(server.HasExited, server.Output);
        Assert.Contains("inline scheduling False", server.Output, StringComparison.Ordinal);
        using var response = await server.Http.GetAsync(new Uri("/poll?channel=off", UriKind.Relative));
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Each boolean the standalone server sets by default: a value that is not one stops it, naming the key.</summary>
    [Theory]
    [InlineData("Kestrel:Sockets:UnsafePreferInlineScheduling")]
    [InlineData("Herald:WebSocketDirectSend")]
    [InlineData("Herald:WebSocketHandoff")]
    public async Task AValueThatIsNotABoolean_StopsTheServerAtStart_NamingTheKey(string key)
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            [key.Replace(":", "__", StringComparison.Ordinal)] = "sometimes",
        }, StartTimeout);

        Assert.True(server.HasExited, $"the server started with an invalid {key}:\n{server.Output}");
        Assert.NotEqual(0, server.ExitCode);
        Assert.Contains("herald: invalid configuration", server.Output, StringComparison.Ordinal);
        Assert.Contains($"'{key}'", server.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "Garbage collector: Workstation")]
    [InlineData("1", "Garbage collector: Server")]
    public async Task TheGarbageCollector_IsWorkstationByDefault_AndTheEnvironmentChoosesServer(string? gcServer, string expected)
    {
        var environment = new Dictionary<string, string> { ["Herald__AllowAnonymous"] = "true" };
        if (gcServer is not null)
        {
            environment["DOTNET_gcServer"] = gcServer;
        }
        await using var server = await HeraldProcess.StartAsync(environment, StartTimeout);
        Assert.False(server.HasExited, server.Output);
        Assert.Contains(expected, server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void TheServersRuntimeConfig_TurnsTheThreadPoolsSpinWaitOff()
    {
        var runtimeConfig = Path.ChangeExtension(HeraldProcess.LocateServerDll(), ".runtimeconfig.json");
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(runtimeConfig));
        var properties = json.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.Equal(0, properties.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }
}
