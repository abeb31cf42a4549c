using BenchmarkDotNet.Attributes;
using Herald.AspNetCore.Security;

namespace Herald.MicroBench;

/// <summary>
/// The server API's key check (<see cref="ApiKey.Check"/>), paid by every publish request: a header string it has not
/// accepted before (<c>Hashed</c>: SHA-256 of the presented key, compared in constant time) and the same string instance
/// again, as Kestrel hands it back for a repeated header on a keep-alive connection (<c>Remembered</c>).
/// </summary>
[MemoryDiagnoser]
public class ApiKeyBenchmarks
{
    private const string Key = "bench-api-key-0123456789abcdef";

    private ApiKey _check = null!;
    private string _remembered = null!;
    private string _fresh = null!;

    [GlobalSetup]
    public void Setup()
    {
        _check = ApiKey.For(Key)!;
        _remembered = "Bearer " + Key;
        // A distinct instance with the same content: never the remembered one, so it is hashed every time.
        _fresh = new string(_remembered.AsSpan());
        if (_check.Check(_remembered) != ApiKey.Verdict.Accepted || _check.Check(_fresh) != ApiKey.Verdict.Accepted)
        {
            throw new InvalidOperationException("the bench key is not accepted");
        }
    }

    [Benchmark(Baseline = true)]
    public bool Hashed() => _check.Check(new string(_fresh.AsSpan())) == ApiKey.Verdict.Accepted;

    [Benchmark]
    public bool Remembered() => _check.Check(_remembered) == ApiKey.Verdict.Accepted;
}
