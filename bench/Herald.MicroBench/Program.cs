using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Herald.MicroBench;

/// <summary>
/// BenchmarkDotNet micro-benchmarks of the hot paths (bench/README.md, "Micro-benchmarks"):
/// <code>
/// dotnet Herald.MicroBench.dll [BenchmarkDotNet options]           the full run
/// dotnet Herald.MicroBench.dll --smoke [BenchmarkDotNet options]   every benchmark once (CI)
/// </code>
/// Without <c>--filter</c> every benchmark runs. Both run in this process (no child builds), and end with the line
/// <c>micro: N passed, M failed</c>, one count per benchmark case; the exit code is 1 when one failed.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var smoke = args.Contains("--smoke");
        var rest = args.Where(a => a != "--smoke").ToList();
        if (!rest.Contains("--filter") && !rest.Contains("-f"))
        {
            // BenchmarkDotNet would otherwise ask which benchmarks to run, on a console CI does not have.
            rest.AddRange(["--filter", "*"]);
        }
        // In process: no child project is generated and built (which would take minutes on 2 cores, and would inherit the
        // repository's build rules), and the GC settings are this project's.
        var job = (smoke ? Job.Dry : Job.Default).WithToolchain(InProcessEmitToolchain.Instance);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job.AsDefault())
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddLogger(ConsoleLogger.Default)
            .AddExporter(MarkdownExporter.GitHub)
            .WithOptions(ConfigOptions.DisableLogFile);
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run([.. rest], config).ToList();

        var passed = 0;
        var failed = 0;
        foreach (var summary in summaries)
        {
            if (summary.HasCriticalValidationErrors)
            {
                foreach (var error in summary.ValidationErrors)
                {
                    Console.WriteLine($"FAIL {error.BenchmarkCase?.DisplayInfo ?? "micro-benchmarks"}: {error.Message}");
                }
                failed += Math.Max(1, summary.BenchmarksCases.Length);
                continue;
            }
            foreach (var benchmark in summary.BenchmarksCases)
            {
                var report = summary[benchmark];
                if (report is { Success: true, ResultStatistics: not null })
                {
                    passed++;
                }
                else
                {
                    failed++;
                    Console.WriteLine($"FAIL {benchmark.DisplayInfo}: it threw or measured nothing (see its output above)");
                }
            }
        }
        if (passed + failed == 0)
        {
            Console.WriteLine("FAIL no benchmark matched the filter");
            failed = 1;
        }
        Console.WriteLine($"micro: {passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
