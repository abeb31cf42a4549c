using System.Net;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore.Security;

/// <summary>
/// Node-wide limits on who may take resources: open WebSockets and SSE streams (in all, and per IP) and HTTP polling /
/// command requests per IP per second.
/// </summary>
/// <remarks>
/// Counters under one lock rather than the platform's <c>PartitionedRateLimiter</c>: each of those runs a 100 ms timer
/// for as long as it lives, and the two this node needed woke a thread twenty times a second on an idle server, about
/// a third of its idle CPU (measured in docs/benchmarks.md, "An idle node's timers"). Here nothing runs between
/// requests: a request rate refills when it is next asked, and an IP's entry goes once it holds no connection and its
/// second has passed (swept at most once a second, on the way of a request).
/// </remarks>
internal sealed class RequestLimits
{
    private readonly Lock _gate = new();
    private readonly Dictionary<IPAddress, IpUse> _byIp = [];
    private readonly HeraldOptions _options;
    private readonly TimeProvider _time;
    private readonly long _second;
    private int _connections;
    private long _nextSweep;

    public RequestLimits(HeraldOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _second = time.TimestampFrequency;
    }

    /// <summary>
    /// Takes a connection slot for the request's IP; returns the slot to hold for the connection's life, or writes
    /// the refusal (503 when the node is full, 429 when the IP is) and returns <see langword="null"/>.
    /// </summary>
    public async Task<IDisposable?> AcquireConnectionAsync(HttpContext context)
    {
        var ip = IpOf(context);
        string? refusal = null;
        int status = 0;
        IpUse? use = null;
        lock (_gate)
        {
            if (_connections >= _options.MaxConnections)
            {
                (status, refusal) = (StatusCodes.Status503ServiceUnavailable, $"this node holds its maximum of {_options.MaxConnections} connections");
            }
            else
            {
                use = UseOf(ip);
                if (use.Connections >= _options.MaxConnectionsPerIp)
                {
                    (status, refusal) = (StatusCodes.Status429TooManyRequests, $"at most {_options.MaxConnectionsPerIp} connections per IP address");
                }
                else
                {
                    use.Connections++;
                    _connections++;
                }
            }
        }
        if (refusal is null)
        {
            return new ConnectionSlot(this, ip, use!);
        }
        context.Response.Headers.RetryAfter = "5";
        await HttpErrors.WriteAsync(context, status, ErrorCodes.RateLimited, refusal);
        return null;
    }

    /// <summary>Counts an HTTP request against its IP; writes 429 and returns <see langword="false"/> when over the rate.</summary>
    public async Task<bool> AllowRequestAsync(HttpContext context)
    {
        var ip = IpOf(context);
        bool allowed;
        lock (_gate)
        {
            allowed = UseOf(ip).TryTakeRequest(_time.GetTimestamp(), _second);
        }
        if (allowed)
        {
            return true;
        }
        context.Response.Headers.RetryAfter = "1";
        await HttpErrors.WriteAsync(context, StatusCodes.Status429TooManyRequests, ErrorCodes.RateLimited, $"more than {_options.MaxHttpRequestsPerSecondPerIp} requests per second from this IP address");
        return false;
    }

    /// <summary>IP addresses with an entry (tests: entries do not outlive their use).</summary>
    internal int TrackedAddresses
    {
        get
        {
            lock (_gate)
            {
                return _byIp.Count;
            }
        }
    }

    /// <summary>Open connections counted against <c>Herald:MaxConnections</c>.</summary>
    internal int Connections => Volatile.Read(ref _connections);

    private static IPAddress IpOf(HttpContext context) => context.Connection.RemoteIpAddress ?? IPAddress.None;

    // Under _gate.
    private IpUse UseOf(IPAddress ip)
    {
        var now = _time.GetTimestamp();
        if (now >= _nextSweep)
        {
            _nextSweep = now + _second;
            Sweep(now);
        }
        if (!_byIp.TryGetValue(ip, out var use))
        {
            use = new IpUse(_options.MaxHttpRequestsPerSecondPerIp, now);
            _byIp.Add(ip, use);
        }
        return use;
    }

    // Under _gate. An entry that holds no connection and whose rate window has passed is what a new one would be.
    private void Sweep(long now)
    {
        List<IPAddress>? idle = null;
        foreach (var (ip, use) in _byIp)
        {
            if (use.IsIdle(now, _second))
            {
                (idle ??= []).Add(ip);
            }
        }
        if (idle is not null)
        {
            foreach (var ip in idle)
            {
                _byIp.Remove(ip);
            }
        }
    }

    private void Release(IPAddress ip, IpUse use)
    {
        lock (_gate)
        {
            _connections--;
            use.Connections--;
            // A connection's end is rare enough to drop the entry at once when it was the IP's last use.
            if (use.IsIdle(_time.GetTimestamp(), _second) && _byIp.TryGetValue(ip, out var current) && current == use)
            {
                _byIp.Remove(ip);
            }
        }
    }

    /// <summary>What one IP address holds: open connections, and this second's HTTP requests.</summary>
    private sealed class IpUse(int requestLimit, long now)
    {
        public int Connections;
        private Herald.Sessions.RateBucket _requests = new(requestLimit, now);

        public bool TryTakeRequest(long now, long second) => _requests.TryTake(now, second);

        public bool IsIdle(long now, long second) => Connections == 0 && _requests.WouldRefill(now, second);
    }

    /// <summary>One connection's place in the counts, given back once when the connection ends.</summary>
    private sealed class ConnectionSlot(RequestLimits owner, IPAddress ip, IpUse use) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                owner.Release(ip, use);
            }
        }
    }
}
