using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace Herald.Redis;

/// <summary>
/// The <c>redis</c> health check (<c>/healthz</c>): healthy when a <c>PING</c> on the connection the broker and the
/// presence store share is answered within <see cref="Timeout"/>; unhealthy, with a short reason, when Redis is not
/// connected, the PING fails, or it takes longer.
/// </summary>
/// <remarks>
/// The reason names the kind of failure only (the client's exception text names endpoints and internal counters, and
/// <c>/healthz</c> needs no key); the exception goes to the health check service's log.
/// </remarks>
internal sealed class RedisHealthCheck(RedisConnection connection) : IHealthCheck
{
    /// <summary>The name the check is registered under, and its key in the <c>/healthz</c> body.</summary>
    public const string Name = "redis";

    /// <summary>How long a PING may take before Redis counts as unreachable; shorter than any sensible probe interval.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        try
        {
            var multiplexer = await connection.GetAsync(timeout.Token);
            // Not connected: say so at once rather than queue a PING behind the reconnection.
            if (!multiplexer.IsConnected)
            {
                return HealthCheckResult.Unhealthy("Redis is not connected");
            }
            var latency = await multiplexer.GetDatabase().PingAsync().WaitAsync(timeout.Token);
            return HealthCheckResult.Healthy($"PING answered in {latency.TotalMilliseconds:0.#} ms");
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"Redis did not answer PING within {Timeout.TotalSeconds:0.#} s");
        }
        catch (Herald.Brokers.BrokerUnavailableException ex)
        {
            return HealthCheckResult.Unhealthy(Reason(ex.InnerException ?? ex), ex);
        }
        catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
        {
            return HealthCheckResult.Unhealthy(Reason(ex), ex);
        }
    }

    private static string Reason(Exception ex) => ex switch
    {
        RedisConnectionException connection => $"Redis cannot be reached ({connection.FailureType})",
        RedisTimeoutException => "Redis timed out",
        RedisServerException server => $"Redis refused: {server.Message.Split(' ', 2)[0]}",
        _ => "Redis cannot be reached",
    };
}
