namespace Herald.Core.Tests;

/// <summary>The limits this change added: each has a default that passes and a range whose outside is refused by name.</summary>
public sealed class NodeOptionsTests
{
    [Fact]
    public void Defaults_PollInterestLingerIs30s_PresenceNodeTimeoutIs10s_AndBothPass()
    {
        var options = new HeraldOptions();
        Assert.Equal(TimeSpan.FromSeconds(30), options.PollInterestLinger);
        Assert.Equal(TimeSpan.FromSeconds(10), options.PresenceNodeTimeout);
        Assert.Empty(options.Validate());
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(3601)]
    public void PollInterestLinger_OutsideZeroToOneHour_IsRefusedByName(int seconds) =>
        Assert.Contains(new HeraldOptions { PollInterestLinger = TimeSpan.FromSeconds(seconds) }.Validate(), p => p.Contains("Herald:PollInterestLinger", StringComparison.Ordinal));

    [Fact]
    public void PollInterestLinger_Zero_IsAllowed() =>
        Assert.Empty(new HeraldOptions { PollInterestLinger = TimeSpan.Zero }.Validate());

    [Theory]
    [InlineData(0)]
    [InlineData(3601)]
    public void PresenceNodeTimeout_OutsideOneSecondToOneHour_IsRefusedByName(int seconds) =>
        Assert.Contains(new HeraldOptions { PresenceNodeTimeout = TimeSpan.FromSeconds(seconds) }.Validate(), p => p.Contains("Herald:PresenceNodeTimeout", StringComparison.Ordinal));

    [Fact]
    public void IdempotencyWindow_DefaultsTo5Minutes_AndPasses()
    {
        var options = new HeraldOptions();
        Assert.Equal(TimeSpan.FromMinutes(5), options.IdempotencyWindow);
        Assert.Empty(options.Validate());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(0.5)]
    [InlineData(86_401)]
    public void IdempotencyWindow_OutsideOneSecondToOneDay_IsRefusedByName(double seconds) =>
        Assert.Contains(new HeraldOptions { IdempotencyWindow = TimeSpan.FromSeconds(seconds) }.Validate(), p => p.Contains("Herald:IdempotencyWindow", StringComparison.Ordinal));

    [Theory]
    [InlineData(1)]
    [InlineData(86_400)]
    public void IdempotencyWindow_AtItsBounds_IsAllowed(double seconds) =>
        Assert.Empty(new HeraldOptions { IdempotencyWindow = TimeSpan.FromSeconds(seconds) }.Validate());
}
