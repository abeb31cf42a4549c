using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>The standalone server (a real <c>herald</c> process) turns the hook proxy on from its configuration.</summary>
public sealed class StandaloneProxyTests(ProxyBackend backend) : IClassFixture<ProxyBackend>
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AProxyUrlThatIsNotHttp_StopsTheServerAtStart_NamingTheKey()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__Proxy__Connect__Url"] = "ftp://127.0.0.1/connect",
        }, StartTimeout);

        Assert.True(server.HasExited, $"the server started with an ftp:// proxy URL:\n{server.Output}");
        Assert.NotEqual(0, server.ExitCode);
        Assert.Contains("Herald:Proxy:Connect:Url 'ftp://127.0.0.1/connect' must be an absolute http:// or https:// URL", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoProxyUrl_TheProxyIsNotRegistered_SoItsOtherKeysAreNotChecked()
    {
        // A bad timeout alone does not stop the server: without a hook URL there is no proxy to configure.
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__Proxy__Timeout"] = "00:00:00",
        }, StartTimeout);

        Assert.False(server.HasExited, server.Output);
    }

    [Fact]
    public async Task ValidProxyUrls_TheServerStarts()
    {
        await using var server = await HeraldProcess.StartAsync(new Dictionary<string, string>
        {
            ["Herald__AllowAnonymous"] = "true",
            ["Herald__Proxy__Rpc__Url"] = backend.Url("/rpc"),
            ["Herald__Proxy__Timeout"] = "00:00:02",
        }, StartTimeout);

        Assert.False(server.HasExited, server.Output);
    }
}
