using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>
/// The standalone server (<c>dotnet herald.dll</c>, the build of src/Herald.Server) as a real process on a free loopback
/// port, configured through environment variables as an operator would; killed by its PID.
/// </summary>
public sealed class HeraldProcess : IAsyncDisposable
{
    private readonly StringBuilder _output = new();
    private readonly Process _process;

    private HeraldProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    }

    public int Port { get; }

    public Uri WebSocketUri => new($"ws://127.0.0.1:{Port}/ws");

    public HttpClient Http { get; }

    /// <summary>Everything the process wrote, for assertions and failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Starts the server; returns once it answers <c>/healthz</c> or has exited (a refused configuration).</summary>
    public static async Task<HeraldProcess> StartAsync(IReadOnlyDictionary<string, string> environment, TimeSpan timeout)
    {
        var dll = LocateServerDll();
        var port = FreePort();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        foreach (var arg in new[] { dll, "--urls", $"http://127.0.0.1:{port}" })
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        var pid = process.Id;
        // Should the test host end without disposing, the server must not outlive it.
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillPid(pid);
        var server = new HeraldProcess(process, port);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                using var response = await server.Http.GetAsync("/healthz", cts.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return server;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
            {
            }
            await Task.Delay(50);
        }
        if (process.HasExited)
        {
            process.WaitForExit(); // drains the output
            return server;
        }
        var output = server.Output;
        await server.DisposeAsync();
        throw new InvalidOperationException($"herald on port {port} neither answered /healthz nor exited within {timeout.TotalSeconds} s:\n{output}");
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        Http.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private static void KillPid(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.Kill();
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
        }
    }

    /// <summary>HERALD_DLL, or src/Herald.Server/bin/{Release|Debug}/net10.0/herald.dll under the directory holding Herald.slnx.</summary>
    internal static string LocateServerDll()
    {
        if (Environment.GetEnvironmentVariable("HERALD_DLL") is { Length: > 0 } given)
        {
            return File.Exists(given) ? given : throw new InvalidOperationException($"HERALD_DLL={given} does not exist");
        }
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Herald.slnx")))
        {
            directory = directory.Parent;
        }
        if (directory is null)
        {
            throw new InvalidOperationException($"Herald.slnx not found above {AppContext.BaseDirectory}; set HERALD_DLL");
        }
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(directory.FullName, "src", "Herald.Server", "bin", configuration, "net10.0", "herald.dll");
        return File.Exists(dll)
            ? dll
            : throw new InvalidOperationException($"server build not found at {dll}; run 'dotnet build Herald.slnx -c {configuration}' or set HERALD_DLL");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
