using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Herald.Bench.Measurement;

namespace Herald.Bench.Systems;

/// <summary>
/// A system under test running as its own process: started on a free loopback port, sampled from /proc every
/// 200 ms for CPU and peak memory, and killed (with its children) at the end. Should the generator exit without
/// disposing one (an unhandled exception, SIGTERM), whatever is still running is killed by its PID on the way out.
/// </summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private static readonly HashSet<Process> Running = [];

    private readonly Process _process;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _sampler;
    private readonly StreamWriter _log;
    private long _peakRss;
    private long _peakPss;

    private ServerProcess(Process process, int port, StreamWriter log)
    {
        _process = process;
        Port = port;
        _log = log;
        _sampler = Task.Run(SampleAsync);
    }

    public int Port { get; }

    public int Pid => _process.Id;

    /// <summary>Highest resident memory (VmRSS) of the process tree seen since the last <see cref="ResetPeak"/>.</summary>
    public long PeakRssBytes => Interlocked.Read(ref _peakRss);

    /// <summary>Highest proportional memory (PSS) of the process tree seen since the last <see cref="ResetPeak"/>.</summary>
    public long PeakPssBytes => Interlocked.Read(ref _peakPss);

    public void ResetPeak()
    {
        var now = ProcessTree.Read(Pid);
        Interlocked.Exchange(ref _peakRss, now.RssBytes);
        Interlocked.Exchange(ref _peakPss, now.PssBytes);
    }

    private static void RaisePeak(ref long peak, long value)
    {
        long seen;
        while (value > (seen = Interlocked.Read(ref peak)) && Interlocked.CompareExchange(ref peak, value, seen) != seen)
        {
        }
    }

    public ProcessTree.Sample Sample() => ProcessTree.Read(Pid);

    public static async Task<ServerProcess> StartAsync(ProcessStartInfo start, int port, string logPath, CancellationToken cancellationToken)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Log(log, e.Data);
        process.ErrorDataReceived += (_, e) => Log(log, e.Data);
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {start.FileName}");
        }
        lock (Running)
        {
            Running.Add(process);
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new ServerProcess(process, port, log);
        try
        {
            await server.WaitListeningAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        server.ResetPeak();
        return server;
    }

    static ServerProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillRunning();
        AppDomain.CurrentDomain.UnhandledException += (_, _) => KillRunning();
    }

    private static void KillRunning()
    {
        lock (Running)
        {
            foreach (var process in Running)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }
            }
            Running.Clear();
        }
    }

    private static void Log(StreamWriter log, string? line)
    {
        if (line is not null)
        {
            lock (log)
            {
                log.WriteLine(line);
            }
        }
    }

    /// <summary>A free loopback port (bound then released; the server binds it next).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private async Task WaitListeningAsync(CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{_process.StartInfo.FileName} exited with {_process.ExitCode} before listening on {Port}");
            }
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(60))
            {
                // Not listening yet: this is a start-up wait, not a measurement, so a short poll is fine.
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task SampleAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                var sample = ProcessTree.Read(Pid);
                RaisePeak(ref _peakRss, sample.RssBytes);
                RaisePeak(ref _peakPss, sample.PssBytes);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (InvalidOperationException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _sampler.ConfigureAwait(false);
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
        }
        catch (TimeoutException)
        {
        }
        lock (Running)
        {
            Running.Remove(_process);
        }
        _process.Dispose();
        _stop.Dispose();
        lock (_log)
        {
            _log.Dispose();
        }
    }
}
