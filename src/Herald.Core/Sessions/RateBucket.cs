using System.Diagnostics;

namespace Herald.Sessions;

/// <summary>
/// A per-connection rate limit: up to <c>limit</c> takes, refilled whole once a second has passed since the last refill
/// (what a <c>TokenBucketRateLimiter</c> with a one-second period and as many tokens per period as its limit does when
/// replenished on use). A mutable struct kept in its session's fields: each connection holds two, for its whole life,
/// and the library's limiter (with its options, queue, lock and lease) cost about 0.5 KiB of them.
/// </summary>
/// <remarks>Not thread-safe: a session handles its commands one at a time.</remarks>
internal struct RateBucket
{
    private readonly int _limit;
    private int _tokens;
    private long _refilledAt;

    /// <summary>A full bucket of <paramref name="limit"/> takes per second.</summary>
    public RateBucket(int limit)
    {
        _limit = limit;
        _tokens = limit;
        _refilledAt = Stopwatch.GetTimestamp();
    }

    /// <summary>Takes one; <see langword="false"/> when this second's takes are used up.</summary>
    public bool TryTake()
    {
        var now = Stopwatch.GetTimestamp();
        if (now - _refilledAt >= Stopwatch.Frequency)
        {
            _tokens = _limit;
            _refilledAt = now;
        }
        if (_tokens <= 0)
        {
            return false;
        }
        _tokens--;
        return true;
    }
}
