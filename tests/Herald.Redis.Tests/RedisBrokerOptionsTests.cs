using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Herald.Redis.Tests;

/// <summary>The Redis options as configuration gives them: keys under <c>Herald:Redis</c>, checked at start.</summary>
public sealed class RedisBrokerOptionsTests
{
    private static RedisBrokerOptions Bind(Dictionary<string, string?> settings)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        services.AddHeraldRedis();
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<RedisBrokerOptions>>().Value;
    }

    [Fact]
    public void PositionCheckInterval_DefaultsToFiveSeconds_AndIsReadFromHeraldRedisPositionCheckInterval()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), Bind(new() { ["Herald:Redis:Configuration"] = "localhost:1" }).PositionCheckInterval);
        Assert.Equal(TimeSpan.FromMilliseconds(750), Bind(new()
        {
            ["Herald:Redis:Configuration"] = "localhost:1",
            ["Herald:Redis:PositionCheckInterval"] = "00:00:00.750",
        }).PositionCheckInterval);
    }

    [Fact]
    public void PositionCheckInterval_ZeroOrNegative_IsRefusedWithTheKeyNamed()
    {
        var error = Assert.Throws<OptionsValidationException>(() => Bind(new()
        {
            ["Herald:Redis:Configuration"] = "localhost:1",
            ["Herald:Redis:PositionCheckInterval"] = "00:00:00",
        }));
        Assert.Contains("Herald:Redis:PositionCheckInterval", error.Message, StringComparison.Ordinal);
    }
}
