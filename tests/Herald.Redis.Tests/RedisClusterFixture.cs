using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using StackExchange.Redis;

namespace Herald.Redis.Tests;

/// <summary>
/// A real local Redis Cluster of three masters (no replicas) of the test run's own: three <c>redis-server
/// --cluster-enabled yes</c> on free loopback ports, each in a temporary directory of its own with no persistence, joined
/// with <c>redis-cli --cluster create</c>; ready when every node reports <c>cluster_state:ok</c>. Killed by their PIDs
/// when the collection is done.
/// </summary>
public sealed class RedisClusterFixture : IAsyncLifetime
{
    private const int Masters = 3;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    private readonly List<(Process Process, string Directory, int Port)> _nodes = [];
    private readonly int _replicasPerMaster;

    /// <summary>The collection's cluster: three masters, no replicas.</summary>
    public RedisClusterFixture()
        : this(replicasPerMaster: 0)
    {
    }

    /// <summary>A cluster of three masters with <paramref name="replicasPerMaster"/> replicas each (a test's own, for failover).</summary>
    internal RedisClusterFixture(int replicasPerMaster) => _replicasPerMaster = replicasPerMaster;

    /// <summary>The servers' ports: the masters' when there are no replicas; masters and replicas (in no set order) otherwise.</summary>
    public IReadOnlyList<int> Ports { get; private set; } = [];

    /// <summary>Kills the server on <paramref name="port"/> by its PID, as a crash would.</summary>
    internal void Kill(int port)
    {
        var (process, _, _) = _nodes.Single(n => n.Port == port);
        if (!process.HasExited)
        {
            process.Kill();
            process.WaitForExit(5000);
        }
    }

    /// <summary>A StackExchange.Redis configuration string naming all three masters.</summary>
    public string Configuration =>
        string.Join(",", Ports.Select(p => $"127.0.0.1:{p}")) + ",abortConnect=false,connectTimeout=2000,syncTimeout=5000,asyncTimeout=5000";

    /// <summary>A new connection of its own: one per node, as separate processes would have.</summary>
    public async Task<ConnectionMultiplexer> ConnectAsync(string? extra = null) =>
        await ConnectionMultiplexer.ConnectAsync(extra is null ? Configuration : $"{Configuration},{extra}");

    public async Task InitializeAsync()
    {
        // A port found free may be taken before redis-server binds it (or its cluster bus port, +10000): then again.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await StartClusterAsync();
                return;
            }
            catch (InvalidOperationException) when (attempt < 3)
            {
                StopAll();
            }
        }
    }

    public Task DisposeAsync()
    {
        StopAll();
        return Task.CompletedTask;
    }

    private async Task StartClusterAsync()
    {
        var ports = FreePorts(Masters * (1 + _replicasPerMaster));
        foreach (var port in ports)
        {
            var directory = Directory.CreateTempSubdirectory("herald-redis-cluster-").FullName;
            var start = new ProcessStartInfo("redis-server")
            {
                WorkingDirectory = directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[]
            {
                "--port", port.ToString(), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", $"nodes-{port}.conf", "--cluster-node-timeout", "2000",
                "--appendonly", "no", "--save", "", "--dir", directory,
            })
            {
                start.ArgumentList.Add(arg);
            }
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
            }
            catch (Win32Exception ex)
            {
                throw new InvalidOperationException(
                    "redis-server is not installed (or not on PATH); the Redis tests need it. Install it, e.g. 'apt-get install redis-server' (test.sh does).", ex);
            }
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _nodes.Add((process, directory, port));
        }
        Ports = ports;
        var deadline = DateTime.UtcNow + StartTimeout;
        foreach (var port in ports)
        {
            while (!(await AskAsync(port, "PING")).StartsWith("+PONG", StringComparison.Ordinal))
            {
                ThrowIfLate(deadline, $"redis-server on port {port} did not answer PING");
                await Task.Delay(50);
            }
        }
        await CreateAsync(ports, _replicasPerMaster, deadline);
        foreach (var port in ports)
        {
            while (!(await AskAsync(port, "CLUSTER INFO")).Contains("cluster_state:ok", StringComparison.Ordinal))
            {
                ThrowIfLate(deadline, $"the cluster node on port {port} did not reach cluster_state:ok");
                await Task.Delay(100);
            }
        }
        // Replicas are ready once they have synced with their master.
        foreach (var port in ports)
        {
            string info;
            while (!(info = await AskAsync(port, "INFO replication")).Contains("role:master", StringComparison.Ordinal)
                && !info.Contains("master_link_status:up", StringComparison.Ordinal))
            {
                ThrowIfLate(deadline, $"the replica on port {port} did not sync with its master");
                await Task.Delay(100);
            }
        }
    }

    private static async Task CreateAsync(int[] ports, int replicasPerMaster, DateTime deadline)
    {
        var start = new ProcessStartInfo("redis-cli")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--cluster");
        start.ArgumentList.Add("create");
        foreach (var port in ports)
        {
            start.ArgumentList.Add($"127.0.0.1:{port}");
        }
        foreach (var arg in new[] { "--cluster-replicas", replicasPerMaster.ToString(System.Globalization.CultureInfo.InvariantCulture), "--cluster-yes" })
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException("redis-cli did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(deadline - DateTime.UtcNow);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw new InvalidOperationException("redis-cli --cluster create did not finish in time");
        }
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"redis-cli --cluster create failed ({process.ExitCode}): {await output}{await error}");
        }
    }

    private static void ThrowIfLate(DateTime deadline, string what)
    {
        if (DateTime.UtcNow > deadline)
        {
            throw new InvalidOperationException($"{what} within {StartTimeout.TotalSeconds} s");
        }
    }

    /// <summary>Sends one inline command and returns what came back first ("" when the node cannot be reached).</summary>
    private static async Task<string> AskAsync(int port, string command)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
            var stream = client.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes(command + "\r\n"));
            var buffer = new byte[8192];
            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(2));
            return Encoding.ASCII.GetString(buffer, 0, read);
        }
        catch (Exception ex) when (ex is SocketException or IOException or TimeoutException)
        {
            return "";
        }
    }

    private void StopAll()
    {
        foreach (var (process, directory, _) in _nodes)
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
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
        _nodes.Clear();
    }

    /// <summary>Ports whose cluster bus port (+10000) is free too, below 55536 so that the bus port exists.</summary>
    private static int[] FreePorts(int count)
    {
        var ports = new List<int>();
        while (ports.Count < count)
        {
            var port = Random.Shared.Next(20000, 45000);
            if (!ports.Contains(port) && IsFree(port) && IsFree(port + 10000))
            {
                ports.Add(port);
            }
        }
        return [.. ports];
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}

/// <summary>
/// The tests on the local Redis Cluster. Not run in parallel with any other collection (the "redis" one included), so
/// CPU-heavy Redis tests never overlap.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RedisClusterCollection : ICollectionFixture<RedisClusterFixture>
{
    public const string Name = "redis-cluster";
}
