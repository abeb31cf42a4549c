using System.Globalization;
using System.Text.Json;
using Herald.Bench;
using Herald.Bench.Reporting;
using Herald.Bench.Scenarios;
using Herald.Bench.Systems;

// herald-bench: the load generator of bench/README.md.
//   herald-bench <fanout|channels|idle|polling|multinode|conflate|all> [--size smoke|default] [--systems herald,signalr,socketio,nchan,kestrel,kestrel-raw[,kestrel-socket]] [--out DIR]
//       [--clients 1000,5000] [--rates 1,2] [--step SECONDS] [--warm-load SECONDS]   narrow a scenario down while investigating
//       [--note TEXT]   said beside the run's figures in docs/benchmarks.md (e.g. that the machine was shared)
//   herald-bench report [--out DIR] [--docs DIR]     regenerates docs/benchmarks.md and its plots from the results
//   herald-bench agent …                              (internal) holds connections for the idle and multinode scenarios
if (args.Length > 0 && args[0] == "agent")
{
    return await Agent.MainAsync(args[1..]);
}

var command = args.FirstOrDefault() ?? "help";
string Option(string name, string fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}

var root = Path.GetFullPath(Option("--root", FindRoot()));
var outDir = Path.GetFullPath(Option("--out", Path.Combine(root, "bench/results")));
if (command == "report")
{
    Report.Write(outDir, Path.GetFullPath(Option("--docs", Path.Combine(root, "docs"))));
    return 0;
}
var scenarios = command == "all" ? ScenarioRunner.Names : ScenarioRunner.Names.Contains(command) ? [command] : null;
if (scenarios is null)
{
    Console.Error.WriteLine("usage: herald-bench <fanout|channels|idle|polling|multinode|conflate|all|report> [--size smoke|default] [--systems herald,signalr,socketio,nchan,kestrel,kestrel-raw[,kestrel-socket]] [--out DIR] [--note TEXT]");
    return 2;
}
var size = Option("--size", "default");
var systems = Option("--systems", string.Join(',', BenchSystem.All.Select(s => s.Name))).Split(',', StringSplitOptions.RemoveEmptyEntries).Select(BenchSystem.Find).ToList();
var options = new BenchOptions
{
    Root = root,
    WorkDir = Path.GetFullPath(Option("--work", Path.Combine(root, "artifacts/bench"))),
    SourceAddresses = [.. Enumerable.Range(2, 4).Select(i => System.Net.IPAddress.Parse($"127.0.0.{i}"))],
    // --transports websocket,long-poll narrows a scenario to some transports while investigating.
    OnlyTransports = Option("--transports", "").Split(',', StringSplitOptions.RemoveEmptyEntries),
};
Directory.CreateDirectory(outDir);
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
// SIGTERM and SIGHUP stop a run as Ctrl-C does: every server, Redis and agent it started is stopped on the way out.
using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; cancel.Cancel(); });
using var onHup = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGHUP, c => { c.Cancel = true; cancel.Cancel(); });

var failures = 0;
var total = 0;
foreach (var scenario in scenarios)
{
    var started = DateTimeOffset.Now;
    var sizes = Sizes.For(scenario, size);
    // --clients 1000,5000, --rates 1,2, --step 5 and --warm-load 40 narrow a scenario down while investigating; the
    // published results use the defaults.
    if (Option("--clients", "") is { Length: > 0 } clients)
    {
        sizes = sizes with { Clients = [.. clients.Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture))] };
    }
    if (Option("--rates", "") is { Length: > 0 } rates)
    {
        sizes = sizes with { Rates = [.. rates.Split(',').Select(r => double.Parse(r, CultureInfo.InvariantCulture))] };
    }
    if (Option("--step", "") is { Length: > 0 } step)
    {
        sizes = sizes with { Step = TimeSpan.FromSeconds(double.Parse(step, CultureInfo.InvariantCulture)) };
    }
    if (Option("--warm-load", "") is { Length: > 0 } warmLoad)
    {
        sizes = sizes with { WarmLoad = TimeSpan.FromSeconds(double.Parse(warmLoad, CultureInfo.InvariantCulture)) };
    }
    List<RunResult> runs;
    try
    {
        runs = await ScenarioRunner.RunAsync(scenario, sizes, systems, options, cancel.Token);
    }
    catch (OperationCanceledException) when (cancel.IsCancellationRequested)
    {
        // Every server, Redis and agent of the interrupted run was stopped on the way here; nothing is written.
        Console.Error.WriteLine($"bench: {scenario} cancelled");
        return 130;
    }
    var note = Option("--note", "");
    var results = new ScenarioResults { Scenario = scenario, Size = size, Started = started, Note = note.Length > 0 ? note : null, Machine = Machine.Describe(), Runs = runs };
    var path = Path.Combine(outDir, $"{scenario}.json");
    // Re-running some systems keeps the other systems' runs of the same scenario from the previous results file.
    if (File.Exists(path) && systems.Count < BenchSystem.All.Count
        && JsonSerializer.Deserialize<ScenarioResults>(await File.ReadAllTextAsync(path), Json.Options) is { Size: var previousSize } previous
        && previousSize == size)
    {
        var rerun = systems.Select(s => s.Name).ToHashSet();
        results = results with { Runs = [.. previous.Runs.Where(r => !rerun.Contains(r.System)).Concat(runs).OrderBy(r => Order(r.System))] };
    }
    await File.WriteAllTextAsync(path, JsonSerializer.Serialize(results, Json.Options));
    Console.WriteLine($"wrote {path}");
    foreach (var run in runs)
    {
        total++;
        var problem = Check(run, size);
        if (problem is not null)
        {
            failures++;
            Console.Error.WriteLine($"FAIL {scenario} {run.System} {run.Transport} x{run.Clients}{(run.Conflate is { } c ? $" ({c.Mode})" : "")}: {problem}");
        }
    }
}
Console.WriteLine($"bench: {total} runs, {total - failures} passed, {failures} failed");
return failures == 0 ? 0 : 1;

// A run fails when it measured nothing; at smoke size (far below saturation) it must also lose nothing.
static string? Check(RunResult run, string size)
{
    if (run.Limit == "failed" || run.Connected == 0)
    {
        return run.FirstError ?? "no client connected";
    }
    if (run.Scenario == "idle")
    {
        return run.Connected < run.Clients ? $"only {run.Connected} of {run.Clients} idle connections held: {run.FirstError}" : null;
    }
    if (run.Steps.Count == 0)
    {
        return run.FirstError ?? "no step measured";
    }
    var first = run.Steps[0];
    if (size == "smoke" && (first.Delivered != first.Expected || first.Errors > 0))
    {
        return $"delivered {first.Delivered} of {first.Expected}, {first.Errors} errors; {run.FirstError}";
    }
    // Conflation's promises hold at every size: they are correctness, not capacity.
    return run.Scenario == "conflate" ? ConflateScenario.Check(run) : null;
}

static int Order(string system) => BenchSystem.All.Concat(BenchSystem.Optional).Select(s => s.Name).ToList().IndexOf(system);

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "Herald.slnx")))
        {
            return dir.FullName;
        }
    }
    return Directory.GetCurrentDirectory();
}

namespace Herald.Bench
{
    internal static class Json
    {
        public static readonly JsonSerializerOptions Options = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    }

    /// <summary>The machine a result was measured on, for the results table.</summary>
    internal static class Machine
    {
        public static Dictionary<string, string> Describe() => new()
        {
            ["cpu"] = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?",
            ["cores"] = Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture),
            ["memory"] = File.ReadLines("/proc/meminfo").First().Split(':', 2)[1].Trim(),
            ["kernel"] = File.ReadAllText("/proc/sys/kernel/osrelease").Trim(),
            ["dotnet"] = Environment.Version.ToString(),
            ["node"] = Run("node", "--version"),
            ["nginx"] = Run("nginx", "-v"),
            ["openFilesLimit"] = Run("bash", "-c \"ulimit -n\""),
        };

        private static string Run(string file, string arguments)
        {
            try
            {
                using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
                var text = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
                p.WaitForExit();
                return text.Trim();
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return "not installed";
            }
        }
    }
}
