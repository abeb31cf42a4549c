using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;

namespace Herald.Redis.Tests;

/// <summary>
/// A real <c>redis-server</c> of the test run's own, on a free loopback port with no persistence, in a temporary
/// directory; killed by its PID when the collection is done. Tests never use the system's Redis (port 6379).
/// </summary>
public sealed class RedisServerFixture : IAsyncLifetime
{
    private readonly RedisServer _server = new(persistent: false);

    public int Port => _server.Port;

    /// <summary>A StackExchange.Redis configuration string for this server.</summary>
    public string Configuration => _server.Configuration;

    public Task InitializeAsync() => _server.StartAsync();

    /// <summary>A new connection of its own: one per node, as separate processes would have.</summary>
    public Task<ConnectionMultiplexer> ConnectAsync() => _server.ConnectAsync();

    public Task DisposeAsync()
    {
        _server.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>
/// One <c>redis-server</c> process on a free loopback port, in a temporary directory of its own. It can be stopped
/// (killed by its PID, as a crash would) and started again on the same port, with its data when
/// <c>persistent</c> (an append-only file synced on every write) and empty otherwise.
/// </summary>
public sealed class RedisServer(bool persistent) : IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private readonly string _directory = Directory.CreateTempSubdirectory("herald-redis-").FullName;
    private Process? _process;

    public int Port { get; private set; }

    /// <summary>More redis-server arguments, e.g. <c>--replicaof 127.0.0.1 &lt;port&gt;</c> for a replica.</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    /// <summary>A StackExchange.Redis configuration string for this server.</summary>
    public string Configuration => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=2000,syncTimeout=5000,asyncTimeout=5000";

    /// <summary>A configuration string with short timeouts, so that failures (a pause, a kill) show within a second or two.</summary>
    public string ShortTimeoutConfiguration => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000";

    /// <summary>Starts the server: on a free port the first time, on the same port after <see cref="Stop"/>.</summary>
    public async Task StartAsync()
    {
        var samePort = Port != 0;
        // A port found free may be taken before redis-server binds it; then try another (not when restarting).
        for (var attempt = 1; ; attempt++)
        {
            if (!samePort)
            {
                Port = FreePort();
            }
            var start = new ProcessStartInfo("redis-server")
            {
                WorkingDirectory = _directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            string[] args = persistent
                ? ["--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", _directory]
                : ["--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory];
            foreach (var arg in args.Concat(ExtraArguments))
            {
                start.ArgumentList.Add(arg);
            }
            try
            {
                _process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
            }
            catch (Win32Exception ex)
            {
                throw new InvalidOperationException(
                    "redis-server is not installed (or not on PATH); the Redis tests need it. Install it, e.g. 'apt-get install redis-server' (test.sh does).", ex);
            }
            _process.OutputDataReceived += (_, _) => { };
            _process.ErrorDataReceived += (_, _) => { };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            if (await WaitForPingAsync())
            {
                return;
            }
            Stop();
            if (attempt == 3)
            {
                throw new InvalidOperationException($"redis-server did not answer PING on 127.0.0.1:{Port} within {StartTimeout.TotalSeconds} s (three attempts)");
            }
        }
    }

    /// <summary>A new connection of its own: one per node, as separate processes would have.</summary>
    public async Task<ConnectionMultiplexer> ConnectAsync(string? extra = null) =>
        await ConnectionMultiplexer.ConnectAsync(extra is null ? Configuration : $"{Configuration},{extra}");

    /// <summary>Kills the server by its PID, as a crash would; <see cref="StartAsync"/> brings it back on the same port.</summary>
    public void Stop()
    {
        if (_process is { } process)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill();
                    process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            process.Dispose();
            _process = null;
        }
    }

    public void Dispose()
    {
        Stop();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task<bool> WaitForPingAsync()
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process!.HasExited)
            {
                return false;
            }
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, Port);
                var stream = client.GetStream();
                await stream.WriteAsync("PING\r\n"u8.ToArray());
                var buffer = new byte[16];
                var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(2));
                if (read >= 5 && buffer.AsSpan(0, 5).SequenceEqual("+PONG"u8))
                {
                    return true;
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException or TimeoutException)
            {
            }
            await Task.Delay(50);
        }
        return false;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

[CollectionDefinition(Name)]
public sealed class RedisCollection : ICollectionFixture<RedisServerFixture>
{
    public const string Name = "redis";
}
