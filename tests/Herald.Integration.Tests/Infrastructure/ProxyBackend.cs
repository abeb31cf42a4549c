using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>
/// The stand-in application backend (<c>tests/proxy-backend/backend.mjs</c>) as a real Node process on a free loopback
/// port; killed by its PID when the tests are done (and it exits by itself when its stdin closes, should the test host die).
/// </summary>
public sealed class ProxyBackend : IAsyncLifetime
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private Process? _process;

    public int Port { get; private set; }

    /// <summary>The backend's URL for <paramref name="path"/> (e.g. <c>/connect</c>, <c>/slow</c>, <c>/canned/not-json</c>).</summary>
    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    public async Task InitializeAsync()
    {
        var script = Path.Combine(AppContext.BaseDirectory, "proxy-backend", "backend.mjs");
        var start = new ProcessStartInfo("node")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        try
        {
            _process = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
        }
        catch (Win32Exception ex)
        {
            throw new InvalidOperationException("node is not installed (or not on PATH); the hook proxy tests run their backend with it (test.sh installs it).", ex);
        }
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        var line = await _process.StandardOutput.ReadLineAsync().WaitAsync(StartTimeout);
        if (line is null || !line.StartsWith("listening ", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"the proxy backend did not start: '{line}'");
        }
        Port = int.Parse(line["listening ".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public Task DisposeAsync()
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
        }
        return Task.CompletedTask;
    }

    /// <summary>A loopback URL where nothing listens: a backend that is down (connection refused).</summary>
    public static string DownUrl()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return $"http://127.0.0.1:{port}/connect";
    }
}
