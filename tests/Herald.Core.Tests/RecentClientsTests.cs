using Herald.Diagnostics;

namespace Herald.Core.Tests;

public sealed class RecentClientsTests
{
    private static long Seconds(double seconds) => (long)Math.Round(seconds * System.Diagnostics.Stopwatch.Frequency);

    [Fact]
    public void AFewClients_AreCountedExactly_HoweverOftenTheyAreSeen()
    {
        var clients = new RecentClients();
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var round = 0; round < 50; round++)
        {
            foreach (var id in new[] { "a1", "b2", "c3" })
            {
                clients.Seen(StringComparer.Ordinal.GetHashCode(id), now);
            }
        }
        Assert.Equal(3, clients.Estimate(now));
    }

    [Fact]
    public void ManyClients_AreEstimatedWithinTwoPercent()
    {
        var clients = new RecentClients();
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        const int count = 100_000;
        for (var i = 0; i < count; i++)
        {
            clients.Seen(StringComparer.Ordinal.GetHashCode($"client-{i}"), now);
            clients.Seen(StringComparer.Ordinal.GetHashCode($"client-{i}"), now); // seen twice, counted once
        }
        Assert.InRange(clients.Estimate(now), count * 0.98, count * 1.02);
    }

    [Fact]
    public void AClient_StaysCountedForOneToTwoWindows_ThenDropsOut()
    {
        var clients = new RecentClients();
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        var window = RecentClients.Window.TotalSeconds;
        clients.Seen(1, start);
        clients.Seen(2, start + Seconds(window * 0.5));
        Assert.Equal(2, clients.Estimate(start + Seconds(window * 0.9)));
        // Into the next window: both still count (the previous window is read too), and a new one joins.
        clients.Seen(3, start + Seconds(window * 1.2));
        Assert.Equal(3, clients.Estimate(start + Seconds(window * 1.5)));
        // Two windows on, only the client seen in the last one is left.
        Assert.Equal(1, clients.Estimate(start + Seconds(window * 2.3)));
        // And after a long silence, nobody.
        Assert.Equal(0, clients.Estimate(start + Seconds(window * 10)));
    }
}
