using System.Diagnostics;

namespace Herald.Sessions;

/// <summary>
/// A rate limit: up to <c>limit</c> takes, refilled whole once a second has passed since the last refill (what a
/// <c>TokenBucketRateLimiter</c> with a one-second period and as many tokens per period as its limit does when
/// replenished on use), with no timer. A mutable struct kept in its owner's fields: each connection holds two, for its
/// whole life, and the library's limiter (with its options, queue, lock and lease) cost about 0.5 KiB of them; the
/// node's per-IP request limit keeps one per IP address.
/// </summary>
/// <remarks>Not thread-safe: a session handles its commands one at a time, and the per-IP limits take theirs under a lock.</remarks>
internal struct RateBucket
{
    private readonly int _limit;
    private int _tokens;
    private long _refilledAt;

    /// <summary>A full bucket of <paramref name="limit"/> takes per second, on the <see cref="Stopwatch"/> clock.</summary>
    public RateBucket(int limit)
        : this(limit, Stopwatch.GetTimestamp())
    {
    }

    /// <summary>A full bucket of <paramref name="limit"/> takes per second, filled at timestamp <paramref name="now"/>.</summary>
    public RateBucket(int limit, long now)
    {
        _limit = limit;
        _tokens = limit;
        _refilledAt = now;
    }

    /// <summary>Takes one; <see langword="false"/> when this second's takes are used up.</summary>
    public bool TryTake() => TryTake(Stopwatch.GetTimestamp(), Stopwatch.Frequency);

    /// <summary>Takes one at timestamp <paramref name="now"/> of a clock with <paramref name="second"/> ticks a second.</summary>
    public bool TryTake(long now, long second)
    {
        if (now - _refilledAt >= second)
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

    /// <summary>Whether a second has passed since the last refill: the next take would find the bucket full.</summary>
    public readonly bool WouldRefill(long now, long second) => now - _refilledAt >= second;
}
