using BenchmarkDotNet.Attributes;
using Herald.AspNetCore.Polling;
using Herald.Protocol;

namespace Herald.MicroBench;

/// <summary>
/// A channel's poll answer served from <see cref="PollAnswerCache"/>: what each of thousands of long polls parked at the
/// same offset costs once one of them has computed the answer (<c>Woken</c>: one new publication), and what an idle
/// re-poll at the head costs (<c>AtHead</c>: nothing new). Both are hits; the setup fails when they are not.
/// </summary>
[MemoryDiagnoser]
public class PollAnswerBenchmarks
{
    private BenchNode _bench = null!;
    private PollAnswerCache _cache = null!;
    private PollCursor _woken = null!;
    private PollCursor _atHead = null!;

    [GlobalSetup]
    public void Setup()
    {
        _bench = BenchNode.Start();
        // A subscriber makes the node receive the channel, so it knows the channel's head and may answer from the cache.
        var subscriber = _bench.Subscribe(Payloads.Channel);
        StreamPosition head = default;
        for (var i = 0; i < 10; i++)
        {
            head = _bench.Publish(Payloads.Channel, Payloads.Json);
        }
        BenchNode.Drain(subscriber);
        _cache = new PollAnswerCache();
        _woken = new PollCursor(Payloads.Channel, _bench.Ns, new StreamPosition(head.Offset - 1, head.Epoch));
        _atHead = new PollCursor(Payloads.Channel, _bench.Ns, head);
        foreach (var cursor in new[] { _woken, _atHead })
        {
            var computed = Answer(cursor);
            if (!ReferenceEquals(computed, Answer(cursor)) || computed.Error is not null)
            {
                throw new InvalidOperationException($"the answer to {cursor.Since} is not served from the cache");
            }
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _bench.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark]
    public object Woken() => Answer(_woken);

    [Benchmark]
    public object AtHead() => Answer(_atHead);

    private ChannelAnswer Answer(PollCursor cursor)
    {
        var answer = _cache.AnswerAsync(_bench.Node, cursor, null, CancellationToken.None);
        return answer.IsCompletedSuccessfully ? answer.Result : answer.AsTask().GetAwaiter().GetResult();
    }
}
