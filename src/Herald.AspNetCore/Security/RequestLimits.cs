using System.Net;
using System.Threading.RateLimiting;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;

namespace Herald.AspNetCore.Security;

/// <summary>
/// Node-wide limits on who may take resources: open WebSockets (in all, and per IP) and HTTP polling / command
/// requests per IP per second. Built on the platform's <see cref="PartitionedRateLimiter"/>.
/// </summary>
internal sealed class RequestLimits : IDisposable
{
    private readonly ConcurrencyLimiter _connections;
    private readonly PartitionedRateLimiter<IPAddress> _connectionsPerIp;
    private readonly PartitionedRateLimiter<IPAddress> _requestsPerIp;
    private readonly HeraldOptions _options;

    public RequestLimits(HeraldOptions options)
    {
        _options = options;
        _connections = new ConcurrencyLimiter(new ConcurrencyLimiterOptions { PermitLimit = options.MaxConnections, QueueLimit = 0 });
        _connectionsPerIp = PartitionedRateLimiter.Create<IPAddress, IPAddress>(ip => RateLimitPartition.GetConcurrencyLimiter(ip,
            _ => new ConcurrencyLimiterOptions { PermitLimit = options.MaxConnectionsPerIp, QueueLimit = 0 }));
        _requestsPerIp = PartitionedRateLimiter.Create<IPAddress, IPAddress>(ip => RateLimitPartition.GetTokenBucketLimiter(ip,
            _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = options.MaxHttpRequestsPerSecondPerIp,
                TokensPerPeriod = options.MaxHttpRequestsPerSecondPerIp,
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                QueueLimit = 0,
                AutoReplenishment = true,
            }));
    }

    /// <summary>
    /// Takes a connection slot for the request's IP; returns the lease to hold for the connection's life, or writes
    /// the refusal (503 when the node is full, 429 when the IP is) and returns <see langword="null"/>.
    /// </summary>
    public async Task<IDisposable?> AcquireConnectionAsync(HttpContext context)
    {
        var global = _connections.AttemptAcquire();
        if (!global.IsAcquired)
        {
            global.Dispose();
            context.Response.Headers.RetryAfter = "5";
            await HttpErrors.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ErrorCodes.RateLimited, $"this node holds its maximum of {_options.MaxConnections} connections");
            return null;
        }
        var perIp = _connectionsPerIp.AttemptAcquire(IpOf(context));
        if (!perIp.IsAcquired)
        {
            perIp.Dispose();
            global.Dispose();
            context.Response.Headers.RetryAfter = "5";
            await HttpErrors.WriteAsync(context, StatusCodes.Status429TooManyRequests, ErrorCodes.RateLimited, $"at most {_options.MaxConnectionsPerIp} connections per IP address");
            return null;
        }
        return new Leases(perIp, global);
    }

    /// <summary>Counts an HTTP request against its IP; writes 429 and returns <see langword="false"/> when over the rate.</summary>
    public async Task<bool> AllowRequestAsync(HttpContext context)
    {
        using var lease = _requestsPerIp.AttemptAcquire(IpOf(context));
        if (lease.IsAcquired)
        {
            return true;
        }
        context.Response.Headers.RetryAfter = "1";
        await HttpErrors.WriteAsync(context, StatusCodes.Status429TooManyRequests, ErrorCodes.RateLimited, $"more than {_options.MaxHttpRequestsPerSecondPerIp} requests per second from this IP address");
        return false;
    }

    private static IPAddress IpOf(HttpContext context) => context.Connection.RemoteIpAddress ?? IPAddress.None;

    public void Dispose()
    {
        _connections.Dispose();
        _connectionsPerIp.Dispose();
        _requestsPerIp.Dispose();
    }

    private sealed class Leases(RateLimitLease first, RateLimitLease second) : IDisposable
    {
        public void Dispose()
        {
            first.Dispose();
            second.Dispose();
        }
    }
}
