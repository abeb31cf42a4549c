using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using HdrHistogram;
using Herald.Bench.Clients;
using Herald.Bench.Measurement;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>
/// A child process (<c>herald-bench agent …</c>) that holds WebSocket subscribers for the generator, so the generator
/// is not bound by one process's 20,000 open files. Each agent binds its sockets to loopback source addresses of its
/// own (127.0.0.x), spreads its connections round-robin over the server ports it is given, and answers the generator's commands on stdin:
/// <c>alive</c> (connections still open) and <c>stats</c> (deliveries, errors, clients still waiting for their first
/// publication, and the latency histogram since the previous <c>stats</c>). It exits when its stdin closes, which is
/// also what happens when the generator dies, so no agent outlives the run.
/// </summary>
internal sealed class Agent : IAsyncDisposable
{
    /// <summary>Connections per agent: under the 20,000 open files of a process, with room for everything else.</summary>
    public const int PerAgent = 9_000;

    private readonly Process _process;

    private Agent(Process process) => _process = process;

    public int Pid => _process.Id;

    /// <summary>What an agent counted: totals since it started, and the latency histogram since the previous call.</summary>
    public sealed record Counters(long Deliveries, long Errors, int Waiting, int Failed, IReadOnlyList<(long Micros, long Count)> Latency);

    public static Agent Start(BenchSystem system, IReadOnlyList<int> ports, int count, string channel, int firstSource, int sources)
    {
        var self = Environment.GetCommandLineArgs()[0];
        var start = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (self.EndsWith(".dll", StringComparison.Ordinal))
        {
            start.ArgumentList.Add(self);
        }
        foreach (var a in new[] { "agent", system.Name, string.Join(',', ports), $"{count}", $"{firstSource}", $"{sources}", channel })
        {
            start.ArgumentList.Add(a);
        }
        return new Agent(Process.Start(start)!);
    }

    public async Task<(int Connected, string? Error)> ReadyAsync(CancellationToken cancellationToken)
    {
        var line = await ReadLineAsync(TimeSpan.FromMinutes(5), cancellationToken).ConfigureAwait(false);
        var parts = line.Split(' ', 3);
        return (int.Parse(parts[1], CultureInfo.InvariantCulture), parts.Length > 2 && parts[2].Length > 0 ? parts[2] : null);
    }

    public async Task<int> AliveAsync(CancellationToken cancellationToken)
    {
        await SendAsync("alive", cancellationToken).ConfigureAwait(false);
        var line = await ReadLineAsync(TimeSpan.FromMinutes(1), cancellationToken).ConfigureAwait(false);
        return int.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
    }

    public async Task<Counters> StatsAsync(CancellationToken cancellationToken)
    {
        await SendAsync("stats", cancellationToken).ConfigureAwait(false);
        var line = await ReadLineAsync(TimeSpan.FromMinutes(1), cancellationToken).ConfigureAwait(false);
        // stats <deliveries> <errors> <waiting> <failed> <µs:count,µs:count,…|->
        var parts = line.Split(' ');
        var latency = parts[5] == "-"
            ? []
            : parts[5].Split(',').Select(pair => pair.Split(':')).Select(p => (long.Parse(p[0], CultureInfo.InvariantCulture), long.Parse(p[1], CultureInfo.InvariantCulture))).ToList();
        return new Counters(
            long.Parse(parts[1], CultureInfo.InvariantCulture),
            long.Parse(parts[2], CultureInfo.InvariantCulture),
            int.Parse(parts[3], CultureInfo.InvariantCulture),
            int.Parse(parts[4], CultureInfo.InvariantCulture),
            latency);
    }

    private async Task SendAsync(string command, CancellationToken cancellationToken)
    {
        await _process.StandardInput.WriteLineAsync(command).ConfigureAwait(false);
        await _process.StandardInput.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<string> ReadLineAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        await _process.StandardOutput.ReadLineAsync(cancellationToken).AsTask().WaitAsync(timeout, cancellationToken).ConfigureAwait(false)
        ?? throw new InvalidOperationException($"agent {_process.Id} exited (code {(_process.WaitForExit(1000) ? _process.ExitCode : -1)})");

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.StandardInput.Close();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or IOException)
        {
            // An agent that does not leave on its own (or whose pipe broke) is killed by its PID.
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }
        }
        _process.Dispose();
    }

    /// <summary>
    /// The agent process: <c>herald-bench agent &lt;system&gt; &lt;port[,port…]&gt; &lt;count&gt; &lt;first source&gt; &lt;sources&gt; [channel]</c>.
    /// </summary>
    public static async Task<int> MainAsync(string[] args)
    {
        var system = BenchSystem.Find(args[0]);
        var ports = args[1].Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToList();
        var count = int.Parse(args[2], CultureInfo.InvariantCulture);
        var first = int.Parse(args[3], CultureInfo.InvariantCulture);
        var sources = Enumerable.Range(first, int.Parse(args[4], CultureInfo.InvariantCulture)).Select(i => IPAddress.Parse($"127.0.0.{i}")).ToList();
        var channel = args.Length > 5 ? args[5] : "idle";
        var stats = new Stats();
        var contexts = ports.Select(port => new ClientContext(port, stats, sources)).ToList();
        var clients = new List<BenchClient>();
        string? error = null;
        using (var gate = new SemaphoreSlim(64))
        {
            await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
            {
                await gate.WaitAsync().ConfigureAwait(false);
                var client = system.CreateClient(Transports.WebSocket, contexts[i % contexts.Count], channel, TimeSpan.FromSeconds(1));
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                    await client.StartAsync(timeout.Token).ConfigureAwait(false);
                    lock (clients)
                    {
                        clients.Add(client);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref error, $"{e.GetType().Name}: {e.Message}".ReplaceLineEndings(" "), null);
                    await client.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    gate.Release();
                }
            })).ConfigureAwait(false);
        }
        Console.WriteLine($"ready {clients.Count} {error}");
        while (Console.ReadLine() is { } line)
        {
            if (line == "alive")
            {
                Console.WriteLine($"alive {clients.Count(c => !c.Failed)}");
            }
            else if (line == "stats")
            {
                Console.WriteLine(StatsLine(stats, clients));
            }
        }
        foreach (var client in clients)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }
        foreach (var context in contexts)
        {
            context.Dispose();
        }
        return 0;
    }

    private static string StatsLine(Stats stats, List<BenchClient> clients)
    {
        // The histogram travels as its recorded buckets (value at 3 significant digits, count): the generator adds
        // them into its own histogram, so percentiles over every agent are exact to the same precision.
        var histogram = stats.TakeInterval();
        var line = new StringBuilder(256);
        line.Append(CultureInfo.InvariantCulture, $"stats {stats.Deliveries} {stats.Errors} {clients.Count(c => c.Received == 0 && !c.Failed)} {clients.Count(c => c.Failed)} ");
        var any = false;
        foreach (var bucket in histogram.RecordedValues())
        {
            line.Append(CultureInfo.InvariantCulture, $"{(any ? "," : "")}{bucket.ValueIteratedTo}:{bucket.CountAtValueIteratedTo}");
            any = true;
        }
        return line.Append(any ? "" : "-").ToString();
    }

    /// <summary>Adds an agent's latency buckets into <paramref name="into"/>.</summary>
    public static void Merge(HistogramBase into, IReadOnlyList<(long Micros, long Count)> latency)
    {
        foreach (var (micros, count) in latency)
        {
            into.RecordValueWithCount(micros, count);
        }
    }
}
