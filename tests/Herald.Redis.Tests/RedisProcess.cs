using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Herald.Redis.Tests;

/// <summary>
/// A <c>redis-server</c> of one fault test's own (no persistence, loopback, a temporary directory), so that killing or
/// pausing it disturbs no other test: <see cref="Stop"/> kills it by its PID, as a crash would, and
/// <see cref="StartAsync"/> brings it back on the same port, empty.
/// </summary>
public sealed class RedisProcess : IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private readonly string _directory = Directory.CreateTempSubdirectory("herald-redis-fault-").FullName;
    private Process? _process;

    public int Port { get; private set; }

    /// <summary>A StackExchange.Redis configuration string with short timeouts, so failures show within a second or two.</summary>
    public string Configuration => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000";

    /// <summary>Starts the server: on a free port the first time (another if it is taken first), on the same port after <see cref="Stop"/>.</summary>
    public async Task StartAsync()
    {
        var samePort = Port != 0;
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
            foreach (var arg in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory })
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

    /// <summary>Kills the server by its PID and waits for it to exit: its port is closed when this returns.</summary>
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
