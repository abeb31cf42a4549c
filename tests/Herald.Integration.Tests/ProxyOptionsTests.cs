using Herald.AspNetCore.Proxy;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Herald.Integration.Tests;

/// <summary>The proxy's settings as configuration gives them (keys under <c>Herald:Proxy</c>), checked at start.</summary>
public sealed class ProxyOptionsTests
{
    private static ProxyOptions Bind(Dictionary<string, string?> settings)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        services.AddHerald();
        services.AddHeraldProxy();
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<ProxyOptions>>().Value;
    }

    private static string Refused(Dictionary<string, string?> settings) =>
        Assert.Throws<OptionsValidationException>(() => Bind(settings)).Message;

    [Fact]
    public void Defaults_FiveSecondTimeout_OneMebibyteAnswers_NoHeaders_NoHooks()
    {
        var options = Bind([]);

        Assert.Equal(TimeSpan.FromSeconds(5), options.Timeout);
        Assert.Equal(1024 * 1024, options.MaxResponseBytes);
        Assert.Empty(options.ForwardHeaders);
        Assert.All(new[] { options.Connect, options.Subscribe, options.Publish, options.Rpc }, hook => Assert.Null(hook.Url));
    }

    [Fact]
    public void EveryKey_IsReadFromHeraldProxy()
    {
        var options = Bind(new()
        {
            ["Herald:Proxy:Connect:Url"] = "http://127.0.0.1:3000/connect",
            ["Herald:Proxy:Subscribe:Url"] = "https://backend.example/subscribe",
            ["Herald:Proxy:Publish:Url"] = "http://[::1]:3000/publish",
            ["Herald:Proxy:Rpc:Url"] = "http://localhost/rpc",
            ["Herald:Proxy:Timeout"] = "00:00:02.5",
            ["Herald:Proxy:ForwardHeaders:0"] = "Cookie",
            ["Herald:Proxy:ForwardHeaders:1"] = "X-Tenant",
            ["Herald:Proxy:MaxResponseBytes"] = "4096",
        });

        Assert.Equal("http://127.0.0.1:3000/connect", options.Connect.Url);
        Assert.Equal("https://backend.example/subscribe", options.Subscribe.Url);
        Assert.Equal("http://[::1]:3000/publish", options.Publish.Url);
        Assert.Equal("http://localhost/rpc", options.Rpc.Url);
        Assert.Equal(TimeSpan.FromMilliseconds(2500), options.Timeout);
        Assert.Equal(["Cookie", "X-Tenant"], options.ForwardHeaders);
        Assert.Equal(4096, options.MaxResponseBytes);
    }

    [Theory]
    [InlineData("Connect", "not a url")]
    [InlineData("Subscribe", "/relative/path")]
    [InlineData("Publish", "ftp://127.0.0.1/publish")]
    [InlineData("Rpc", "ws://127.0.0.1/rpc")]
    public void AUrlThatIsNotAbsoluteHttp_IsRefusedWithItsKey(string hook, string url)
    {
        var message = Refused(new() { [$"Herald:Proxy:{hook}:Url"] = url });

        Assert.Contains($"Herald:Proxy:{hook}:Url '{url}' must be an absolute http:// or https:// URL", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("00:00:00")]
    [InlineData("-00:00:01")]
    [InlineData("00:01:00.001")]
    public void ATimeoutOutOfRange_IsRefused(string timeout)
    {
        Assert.Contains("Herald:Proxy:Timeout must be positive and at most 60 s", Refused(new() { ["Herald:Proxy:Timeout"] = timeout }), StringComparison.Ordinal);
    }

    [Fact]
    public void TheLongestTimeout_OneMinute_IsAccepted()
    {
        Assert.Equal(TimeSpan.FromMinutes(1), Bind(new() { ["Herald:Proxy:Timeout"] = "00:01:00", ["Herald:HandlerTimeout"] = "00:02:00" }).Timeout);
    }

    [Fact]
    public void ATimeoutLongerThanTheHandlerTimeout_IsRefused_NamingBothKeys()
    {
        var message = Refused(new() { ["Herald:Proxy:Timeout"] = "00:00:10" });

        Assert.Contains("Herald:Proxy:Timeout (00:00:10) must not exceed Herald:HandlerTimeout (00:00:05)", message, StringComparison.Ordinal);
        Assert.Equal(TimeSpan.FromSeconds(10), Bind(new() { ["Herald:Proxy:Timeout"] = "00:00:10", ["Herald:HandlerTimeout"] = "00:00:10" }).Timeout);
    }

    [Theory]
    [InlineData(5000, 5000, 4750)] // the defaults: the proxy gives up 250 ms before the handler timeout
    [InlineData(2000, 5000, 2000)]
    [InlineData(4900, 5000, 4750)]
    [InlineData(1000, 1000, 900)]  // short handler timeouts: a tenth of it
    [InlineData(50, 50, 45)]
    public void TheProxyWaits_ItsTimeout_ButAlwaysLessThanTheHandlerTimeout(int proxyMs, int handlerMs, int effectiveMs)
    {
        Assert.Equal(TimeSpan.FromMilliseconds(effectiveMs),
            ProxyOptionsValidator.EffectiveTimeout(TimeSpan.FromMilliseconds(proxyMs), TimeSpan.FromMilliseconds(handlerMs)));
    }

    [Theory]
    [InlineData("1023")]
    [InlineData("67108865")]
    public void MaxResponseBytesOutOfRange_IsRefused(string bytes)
    {
        Assert.Contains("Herald:Proxy:MaxResponseBytes must be between 1024 and 67108864", Refused(new() { ["Herald:Proxy:MaxResponseBytes"] = bytes }), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Host", "frames the proxy request itself")]
    [InlineData("content-length", "frames the proxy request itself")]
    [InlineData("Transfer-Encoding", "frames the proxy request itself")]
    [InlineData("Bad Header", "is not an HTTP header name")]
    [InlineData("X:Y", "is not an HTTP header name")]
    public void AHeaderThatCannotBeForwarded_IsRefusedByName(string header, string why)
    {
        var message = Refused(new() { ["Herald:Proxy:ForwardHeaders:0"] = header });

        Assert.Contains($"Herald:Proxy:ForwardHeaders: '{header}' {why}", message, StringComparison.Ordinal);
    }
}
