using Herald.Brokers;
using StackExchange.Redis;

namespace Herald.Redis;

/// <summary>
/// One process's connection to Redis, shared by the broker and the presence store. It connects on first use, so
/// building the services does no I/O; it never gives up connecting (<c>abortConnect=false</c>), so a node starts while
/// Redis is down and answers <c>unavailable</c> until it is back.
/// </summary>
internal sealed class RedisConnection : IAsyncDisposable
{
    private readonly Lazy<Task<IConnectionMultiplexer>> _connect;
    private readonly bool _owned;
    private int _disposed;

    /// <summary>Uses a multiplexer the caller owns (and disposes).</summary>
    public RedisConnection(IConnectionMultiplexer multiplexer)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        _connect = new(Task.FromResult(multiplexer));
    }

    /// <summary>Connects with a StackExchange.Redis configuration string on first use, and owns the connection.</summary>
    public RedisConnection(string configuration)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(configuration);
        var options = ConfigurationOptions.Parse(configuration);
        options.AbortOnConnectFail = false;
        _connect = new(async () => await ConnectionMultiplexer.ConnectAsync(options));
        _owned = true;
    }

    /// <summary>The multiplexer, connected or connecting.</summary>
    public async ValueTask<IConnectionMultiplexer> GetAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        try
        {
            return await _connect.Value.WaitAsync(cancellationToken);
        }
        catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
        {
            throw RedisErrors.Unavailable(ex);
        }
    }

    /// <summary>Closes the connection when this object made it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0 || !_owned || !_connect.IsValueCreated)
        {
            return;
        }
        try
        {
            var multiplexer = await _connect.Value;
            await multiplexer.CloseAsync();
            multiplexer.Dispose();
        }
        catch (Exception ex) when (RedisErrors.IsUnavailable(ex))
        {
            // Closing a connection to a Redis that is gone has nothing left to do.
        }
    }
}

/// <summary>Which Redis failures mean "the backend cannot be reached", turned into <see cref="BrokerUnavailableException"/>.</summary>
internal static class RedisErrors
{
    public static bool IsUnavailable(Exception ex) => ex switch
    {
        RedisConnectionException or RedisTimeoutException => true,
        // A server that is loading its data, a replica promoted or demoted, a cluster without a quorum: all transient.
        RedisServerException server => server.Message.StartsWith("LOADING", StringComparison.Ordinal)
            || server.Message.StartsWith("READONLY", StringComparison.Ordinal)
            || server.Message.StartsWith("MASTERDOWN", StringComparison.Ordinal)
            || server.Message.StartsWith("CLUSTERDOWN", StringComparison.Ordinal)
            || server.Message.StartsWith("TRYAGAIN", StringComparison.Ordinal)
            || server.Message.StartsWith("BUSY", StringComparison.Ordinal),
        _ => false,
    };

    public static BrokerUnavailableException Unavailable(Exception ex) => new($"Redis cannot be reached: {ex.Message}", ex);

    /// <summary>Awaits a Redis call (at most until <paramref name="cancellationToken"/>), turning unavailability into <see cref="BrokerUnavailableException"/>.</summary>
    public static async Task<T> GuardAsync<T>(Task<T> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call.WaitAsync(cancellationToken);
        }
        catch (Exception ex) when (IsUnavailable(ex))
        {
            throw Unavailable(ex);
        }
    }

    public static async Task GuardAsync(Task call, CancellationToken cancellationToken)
    {
        try
        {
            await call.WaitAsync(cancellationToken);
        }
        catch (Exception ex) when (IsUnavailable(ex))
        {
            throw Unavailable(ex);
        }
    }
}
