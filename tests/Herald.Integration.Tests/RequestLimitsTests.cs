using System.Net;
using Herald.AspNetCore.Security;
using Microsoft.AspNetCore.Http;

namespace Herald.Integration.Tests;

/// <summary>
/// The per-IP and node-wide counts behind <c>Herald:MaxConnections</c>, <c>MaxConnectionsPerIp</c> and
/// <c>MaxHttpRequestsPerSecondPerIp</c>, on a clock the test moves: they run no timer, so what they keep must go by
/// itself when it is next asked (RateLimitTests drive the same limits through a real server).
/// </summary>
public sealed class RequestLimitsTests
{
    private static readonly IPAddress A = IPAddress.Parse("127.0.0.2"), B = IPAddress.Parse("127.0.0.3"), C = IPAddress.IPv6Loopback;

    [Fact]
    public async Task Connections_AreCountedPerIp_AndInAll_AndASlotIsGivenBackOnce()
    {
        var limits = new RequestLimits(new HeraldOptions { MaxConnections = 3, MaxConnectionsPerIp = 2 }, new ManualClock());
        var a1 = await limits.AcquireConnectionAsync(Request(A));
        var a2 = await limits.AcquireConnectionAsync(Request(A));
        Assert.NotNull(a1);
        Assert.NotNull(a2);
        var refusedA = Request(A);
        Assert.Null(await limits.AcquireConnectionAsync(refusedA));
        Assert.Equal(StatusCodes.Status429TooManyRequests, refusedA.Response.StatusCode);
        Assert.Equal("5", refusedA.Response.Headers.RetryAfter.ToString());

        Assert.NotNull(await limits.AcquireConnectionAsync(Request(B)));
        var full = Request(C);
        Assert.Null(await limits.AcquireConnectionAsync(full));
        Assert.Equal(StatusCodes.Status503ServiceUnavailable, full.Response.StatusCode);
        Assert.Equal(3, limits.Connections);

        // Disposing a slot twice (a connection's teardown and an error path, say) gives one place back, not two.
        a1!.Dispose();
        a1.Dispose();
        Assert.Equal(2, limits.Connections);
        Assert.NotNull(await limits.AcquireConnectionAsync(Request(A)));
        Assert.Null(await limits.AcquireConnectionAsync(Request(C)));
    }

    [Fact]
    public async Task RequestsPerIp_RefillAfterASecond_AndAnIpThatIsDone_LeavesNoEntry()
    {
        var clock = new ManualClock();
        var limits = new RequestLimits(new HeraldOptions { MaxHttpRequestsPerSecondPerIp = 2, MaxConnectionsPerIp = 1 }, clock);
        Assert.True(await limits.AllowRequestAsync(Request(A)));
        Assert.True(await limits.AllowRequestAsync(Request(A)));
        var refused = Request(A);
        Assert.False(await limits.AllowRequestAsync(refused));
        Assert.Equal(StatusCodes.Status429TooManyRequests, refused.Response.StatusCode);
        Assert.Equal("1", refused.Response.Headers.RetryAfter.ToString());
        Assert.True(await limits.AllowRequestAsync(Request(B)), "another IP has its own rate");
        clock.Advance(999);
        Assert.False(await limits.AllowRequestAsync(Request(A)));
        clock.Advance(1);
        Assert.True(await limits.AllowRequestAsync(Request(A)));

        // An IP holding a connection keeps its entry (and its count) through sweeps; one that only sent requests goes
        // once its second has passed, on the way of someone else's request.
        var held = await limits.AcquireConnectionAsync(Request(C));
        Assert.Equal(2, limits.TrackedAddresses); // A and C: B's second had passed when A's last request swept
        clock.Advance(5_000);
        Assert.True(await limits.AllowRequestAsync(Request(B)));
        Assert.Equal(2, limits.TrackedAddresses); // B (just now) and C (its connection); A is gone
        Assert.Null(await limits.AcquireConnectionAsync(Request(C))); // C's connection is still counted

        // The last connection of an IP whose second has passed takes its entry with it.
        held!.Dispose();
        Assert.Equal(1, limits.TrackedAddresses);
    }

    private static DefaultHttpContext Request(IPAddress ip) => new() { Connection = { RemoteIpAddress = ip } };

    /// <summary>A clock that moves only when the test says, in milliseconds.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _now = 1_000_000;

        public void Advance(long milliseconds) => _now += milliseconds;

        public override long GetTimestamp() => _now;

        public override long TimestampFrequency => 1000;
    }
}
