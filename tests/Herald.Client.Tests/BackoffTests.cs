namespace Herald.Client.Tests;

public sealed class BackoffTests
{
    [Fact]
    public void Backoff_DoublesPerRound_IsCapped_AndJitterOnlyShortensIt()
    {
        var min = TimeSpan.FromMilliseconds(100);
        var max = TimeSpan.FromSeconds(2);
        Assert.Equal(TimeSpan.FromMilliseconds(100), HeraldClient.ComputeBackoff(0, min, max, 0.5, 0));
        Assert.Equal(TimeSpan.FromMilliseconds(400), HeraldClient.ComputeBackoff(2, min, max, 0.5, 0));
        Assert.Equal(TimeSpan.FromSeconds(2), HeraldClient.ComputeBackoff(10, min, max, 0.5, 0));
        Assert.Equal(TimeSpan.FromSeconds(2), HeraldClient.ComputeBackoff(int.MaxValue, min, max, 0.5, 0));
        Assert.Equal(TimeSpan.FromMilliseconds(100), HeraldClient.ComputeBackoff(1, min, max, 0.5, 1));
        Assert.Equal(TimeSpan.FromMilliseconds(150), HeraldClient.ComputeBackoff(1, min, max, 0.5, 0.5));
    }

    [Fact]
    public void InvalidOptions_AreRefusedAtConstruction()
    {
        Assert.Throws<ArgumentException>(() => new HeraldClient(new HeraldClientOptions { BaseUri = new Uri("ws://localhost/") }));
        Assert.Throws<ArgumentException>(() => new HeraldClient(new HeraldClientOptions { Transports = [] }));
        Assert.Throws<ArgumentException>(() => new HeraldClient(new HeraldClientOptions { ReconnectJitter = 2 }));
        var relative = Assert.Throws<ArgumentException>(() => new HeraldClient(new HeraldClientOptions { BaseUris = [new Uri("http://localhost/"), new Uri("/herald", UriKind.Relative)] }));
        Assert.Equal("BaseUris", relative.ParamName);
    }
}
