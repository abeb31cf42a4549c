using System.Text;
using Herald.Fuzz;

namespace Herald.Core.Tests;

/// <summary>
/// Replays every input the AFL++ fuzz target found (tests/Herald.Core.Tests/FuzzRegressions/, copied to the output)
/// through a fresh session with the fuzzer's own oracle, so a fixed crash stays fixed. A built-in sample input runs
/// too, so the harness is exercised while the folder holds no finding yet.
/// </summary>
public sealed class FuzzRegressionTests
{
    private const string Sample = "(sample)";

    private static string Folder => Path.Combine(AppContext.BaseDirectory, "FuzzRegressions");

    public static TheoryData<string> Inputs()
    {
        var data = new TheoryData<string> { Sample };
        if (Directory.Exists(Folder))
        {
            foreach (var file in Directory.EnumerateFiles(Folder).Where(f => Path.GetFileName(f) != "README.md").Order(StringComparer.Ordinal))
            {
                data.Add(Path.GetFileName(file));
            }
        }
        return data;
    }

    [Fact]
    public void TheRegressionFolderIsCopiedToTheOutput()
    {
        Assert.True(Directory.Exists(Folder), $"{Folder} is missing: FuzzRegressions/** must be copied to the output");
        Assert.True(File.Exists(Path.Combine(Folder, "README.md")));
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void ReplayedInput_GetsWellFormedReplies(string name)
    {
        var input = name == Sample
            ? Encoding.UTF8.GetBytes("{\"id\":1,\"op\":\"subscribe\",\"channel\":\"chat:a\"}\r\n\n{\"id\":2,\"op\":\"publish\",\"channel\":\"chat:a\",\"data\":[1]}\n{\"op\":\n\u00ff\u0000")
            : File.ReadAllBytes(Path.Combine(Folder, name));

        FuzzHarness.Run(input); // throws FuzzViolationException (or the server's own exception) on a regression
    }

    [Fact]
    public void TheOracle_AcceptsGoodReplies_AndRejectsBadOnes()
    {
        var frame = "{\"id\":0,\"op\":\"connect\"}\n \t\r\n{\"id\":1,\"op\":\"ping\"}"u8.ToArray(); // two commands, one blank line
        static ReadOnlyMemory<byte> M(string json) => Encoding.UTF8.GetBytes(json);
        var ok = M("{\"id\":0,\"result\":{}}");
        var push = M("{\"push\":{\"channel\":\"chat:a\"}}");

        FuzzHarness.Verify(frame, [ok, push, M("{\"id\":1,\"error\":{\"code\":\"bad_request\",\"message\":\"x\"}}")], []);

        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok], [])); // a command without a reply
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, ok, ok], [])); // one reply too many
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, M("{\"id\":1,\"result\":")], [])); // not JSON
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, M("{\"id\":1,\n\"result\":1}")], [])); // raw newline
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, M("{\"id\":1,\"error\":{\"code\":\"internal\",\"message\":\"x\"}}")], []));
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, M("{\"id\":1,\"error\":{\"code\":\"made_up\",\"message\":\"x\"}}")], []));
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, M("[1]")], [])); // not an object
        Assert.Throws<FuzzViolationException>(() => FuzzHarness.Verify(frame, [ok, ok], [4003])); // closed the connection
    }
}
