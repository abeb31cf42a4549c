using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Herald.Client.Tests.Nginx;

/// <summary>
/// Debian's nginx, run by the test with deploy/nginx/herald.conf (the file docs/deploy.md shows) on a free loopback port,
/// with a prefix, temp dirs and logs of its own; killed by its PID. Only the <c>listen</c> line and the upstream's
/// <c>server</c> line of the file are replaced (each must be there exactly once), plus whatever <paramref name="edit"/> does.
/// </summary>
public sealed class NginxProxy : IAsyncDisposable
{
    public const string Binary = "/usr/sbin/nginx";
    private const string ListenLine = "    listen 80;\n";
    private const string UpstreamLine = "    server 127.0.0.1:8080 max_fails=1 fail_timeout=5s;\n";

    private readonly string _dir;
    private readonly string _configPath;
    private Process? _process;

    private NginxProxy(string dir, string configPath, int port)
    {
        _dir = dir;
        _configPath = configPath;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The proxy's address, as clients use it.</summary>
    public Uri BaseUri => new($"http://127.0.0.1:{Port}/");

    /// <summary>The same proxy over IPv6 loopback: another client address as nginx sees it.</summary>
    public Uri BaseUriV6 => new($"http://[::1]:{Port}/");

    public string AccessLog => File.Exists(Path.Combine(_dir, "access.log")) ? File.ReadAllText(Path.Combine(_dir, "access.log")) : "";

    /// <summary>deploy/nginx/herald.conf, found above the test's output folder.</summary>
    public static string ConfigFile
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "deploy", "nginx", "herald.conf");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
            throw new InvalidOperationException($"deploy/nginx/herald.conf not found above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>Starts nginx in front of <paramref name="upstreams"/> and waits until it accepts connections.</summary>
    public static async Task<NginxProxy> StartAsync(IEnumerable<Uri> upstreams, Func<string, string>? edit = null)
    {
        if (!File.Exists(Binary))
        {
            throw new InvalidOperationException($"{Binary} is missing: apt-get install nginx (test.sh does)");
        }
        var dir = Directory.CreateTempSubdirectory("herald-nginx-").FullName;
        var port = FreePort();
        var herald = File.ReadAllText(ConfigFile).ReplaceLineEndings("\n");
        herald = ReplaceOnce(herald, ListenLine, $"    listen 127.0.0.1:{port};\n    listen [::1]:{port};\n");
        herald = ReplaceOnce(herald, UpstreamLine, string.Concat(upstreams.Select(u => $"    server {u.Authority} max_fails=1 fail_timeout=5s;\n")));
        if (edit is not null)
        {
            herald = edit(herald);
        }
        File.WriteAllText(Path.Combine(dir, "herald.conf"), herald);
        var user = Environment.UserName == "root" ? "user root;\n" : "";
        var config = Path.Combine(dir, "nginx.conf");
        File.WriteAllText(config, $$"""
            {{user}}daemon off;
            worker_processes 1;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log info;
            events { worker_connections 1024; }
            http {
                log_format herald '$remote_addr "$request" $status upstream=$upstream_addr';
                access_log {{dir}}/access.log herald;
                client_body_temp_path {{dir}}/client_body;
                proxy_temp_path {{dir}}/proxy;
                fastcgi_temp_path {{dir}}/fastcgi;
                uwsgi_temp_path {{dir}}/uwsgi;
                scgi_temp_path {{dir}}/scgi;
                include {{dir}}/herald.conf;
            }
            """);
        var proxy = new NginxProxy(dir, config, port);
        await proxy.StartAsync();
        return proxy;
    }

    /// <summary>Starts nginx (again, on the same port): after <see cref="KillAsync"/>, clients come back through it.</summary>
    public async Task StartAsync()
    {
        var start = new ProcessStartInfo(Binary)
        {
            ArgumentList = { "-p", _dir, "-c", _configPath, "-e", Path.Combine(_dir, "error.log") },
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        _process = Process.Start(start) ?? throw new InvalidOperationException("nginx did not start");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"nginx exited ({_process.ExitCode}): {await _process.StandardError.ReadToEndAsync()} {ErrorLog()}");
            }
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                // Polling the port is how the start-up deadline is enforced, not synchronisation on a guess.
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Kills nginx (master and worker) by its PID: every connection through it drops at once.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        _process?.Dispose();
        _process = null;
    }

    public string ErrorLog() => File.Exists(Path.Combine(_dir, "error.log")) ? File.ReadAllText(Path.Combine(_dir, "error.log")) : "";

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // A worker's temp file still open: the folder is in /tmp and harmless.
        }
    }

    private static string ReplaceOnce(string text, string line, string with)
    {
        var first = text.IndexOf(line, StringComparison.Ordinal);
        if (first < 0 || text.IndexOf(line, first + 1, StringComparison.Ordinal) >= 0)
        {
            throw new InvalidOperationException($"deploy/nginx/herald.conf must contain the line '{line.Trim()}' exactly once");
        }
        return string.Concat(text.AsSpan(0, first), with, text.AsSpan(first + line.Length));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
