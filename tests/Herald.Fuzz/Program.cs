using Herald.Fuzz;
using SharpFuzz;

// Herald's coverage-guided fuzz target: AFL++ drives it through SharpFuzz (tests/fuzz/run.sh builds, instruments and
// runs it). Each input is one WebSocket message handed to a fresh ClientSession after a connect line; FuzzHarness
// throws when a reply is not well-formed JSON with a documented code, and SharpFuzz reports that to AFL++ as a crash.
//
//   dotnet Herald.Fuzz.dll                 one input from stdin (what afl-fuzz runs; alone, it runs once)
//   dotnet Herald.Fuzz.dll --replay PATH…  replays files or folders of inputs in-process, prints each verdict,
//                                          exits 1 if any failed (to triage what AFL++ found)

if (args.Length > 0 && args[0] == "--replay")
{
    // Through Fuzzer.Run without afl-fuzz (it runs the action once) so that instrumented assemblies have a trace
    // map to write to; the action ignores stdin.
    var failed = 0;
    Fuzzer.Run(_ =>
    {
        var files = args.Skip(1).SelectMany<string, string>(p => Directory.Exists(p) ? Directory.EnumerateFiles(p, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal) : [p]);
        foreach (var file in files)
        {
            try
            {
                FuzzHarness.Run(File.ReadAllBytes(file));
                Console.WriteLine($"ok    {file}");
            }
            catch (Exception ex)
            {
                failed++;
                Console.WriteLine($"FAIL  {file}: {ex.GetType().Name}: {ex.Message}");
            }
        }
    });
    return failed == 0 ? 0 : 1;
}

// Out of process: the fuzzed code runs in a child that is restarted if it dies (stack overflow, timeout), so such
// an input is recorded as a crash instead of taking the fork server down.
Fuzzer.OutOfProcess.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    FuzzHarness.Run(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
});
return 0;
