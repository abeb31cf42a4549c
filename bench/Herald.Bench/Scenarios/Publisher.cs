using System.Diagnostics;
using HdrHistogram;
using Herald.Bench.Clients;
using Herald.Bench.Measurement;
using Herald.Bench.Systems;

namespace Herald.Bench.Scenarios;

/// <summary>
/// Publishes over HTTP at a set rate, the same way for every system (a POST per publication, on a small keep-alive
/// pool). Its own traffic is counted apart, so "bytes and requests per delivery" describe the subscribers' side. With
/// several nodes, publications go to them round-robin, one keep-alive pool per node. Each call is timed, from the
/// request's start to its answer, so a step reports how long the server took to accept a publication.
/// </summary>
internal sealed class Publisher : IDisposable
{
    private const int MaxInFlight = 64;
    private readonly BenchSystem _system;
    private readonly HttpClient[] _http;
    private readonly ClientContext _context;
    // Publish call latency in microseconds, 1 µs .. 10 min, 3 significant digits; concurrent calls record at once.
    private readonly Recorder _latency = new(1, 600_000_000, 3, (id, low, high, digits) => new LongConcurrentHistogram(id, low, high, digits));
    private long _next;
    private long _failed;
    private string? _firstError;

    public Publisher(BenchSystem system, int port)
        : this(system, [port])
    {
    }

    public Publisher(BenchSystem system, IReadOnlyList<int> ports)
    {
        _system = system;
        _context = new ClientContext(ports[0], new Stats(), []);
        _http = [.. ports.Select(port => new HttpClient(_context.CreateHandler(MaxInFlight), disposeHandler: true) { BaseAddress = new Uri($"http://127.0.0.1:{port}/") })];
    }

    public int PayloadBytes { get; init; } = 100;

    public long Failed => Interlocked.Read(ref _failed);

    public string? FirstError => _firstError;

    /// <summary>The latency of every publish call of the last <see cref="RunAsync"/> (the warm-up's calls excluded), answered or failed.</summary>
    public HistogramBase LastRunLatency { get; private set; } = new LongHistogram(1, 600_000_000, 3);

    public async Task<bool> PublishAsync(string channel, CancellationToken cancellationToken)
    {
        try
        {
            using var request = _system.CreatePublish(channel, Payload.Create(PayloadBytes));
            var http = _http[(ulong)Interlocked.Increment(ref _next) % (ulong)_http.Length];
            var started = Stopwatch.GetTimestamp();
            using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
            _latency.RecordValue(Math.Clamp((long)Stopwatch.GetElapsedTime(started).TotalMicroseconds, 1, 600_000_000));
            if (response.IsSuccessStatusCode)
            {
                return true;
            }
            Interlocked.CompareExchange(ref _firstError, $"publish answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}", null);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
        {
            Interlocked.CompareExchange(ref _firstError, "publish failed: " + e.Message, null);
        }
        Interlocked.Increment(ref _failed);
        return false;
    }

    /// <summary>
    /// Publishes <paramref name="rate"/> publications per second for <paramref name="duration"/>, spread evenly
    /// (channels chosen by <paramref name="channelFor"/>). Returns how many succeeded; if the server can't take them
    /// that fast, fewer are sent, which the caller sees as a publish rate under target.
    /// </summary>
    public async Task<long> RunAsync(double rate, TimeSpan duration, Func<long, string> channelFor, CancellationToken cancellationToken)
    {
        using var inFlight = new SemaphoreSlim(MaxInFlight, MaxInFlight);
        long sent = 0, succeeded = 0;
        _latency.GetIntervalHistogram(); // drop what came before (the warm-up's calls)
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            var due = Math.Min((long)(clock.Elapsed.TotalSeconds * rate) + 1, (long)Math.Ceiling(duration.TotalSeconds * rate));
            while (sent < due && clock.Elapsed < duration)
            {
                await inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
                var channel = channelFor(sent++);
                _ = Task.Run(async () =>
                {
                    try
                    {
                        if (await PublishAsync(channel, cancellationToken).ConfigureAwait(false))
                        {
                            Interlocked.Increment(ref succeeded);
                        }
                    }
                    finally
                    {
                        inFlight.Release();
                    }
                }, CancellationToken.None);
            }
            var next = (sent + 1) / rate - clock.Elapsed.TotalSeconds;
            if (next > 0.001)
            {
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(next, 0.05)), cancellationToken).ConfigureAwait(false);
            }
        }
        // Wait for the stragglers.
        for (var i = 0; i < MaxInFlight; i++)
        {
            await inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        LastRunLatency = _latency.GetIntervalHistogram();
        return Interlocked.Read(ref succeeded);
    }

    public void Dispose()
    {
        foreach (var http in _http)
        {
            http.Dispose();
        }
        _context.Dispose();
    }
}
