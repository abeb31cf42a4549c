using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.MicroBench;

/// <summary>
/// The fan-out of one publication to N subscribers of one channel: the node's <c>HandlePublication</c> (called as a
/// broker calls it) → the channel's fan-out queue and its worker (run inline by <see cref="BenchNode"/>) → <see cref="Subscription.Deliver"/> → <see cref="OutboundQueue.TryEnqueue"/> for each, then every
/// queue read as its writer would (without it the queues would fill and trip the slow-consumer limit). Divide by N for
/// the cost per subscriber; an allocation that grows with N is one per subscriber.
/// </summary>
[MemoryDiagnoser]
public class FanOutBenchmarks
{
    private BenchNode _bench = null!;
    private ClientSession[] _sessions = [];
    private IBrokerEventHandler _events = null!;
    private string _epoch = "";
    private ulong _offset;

    [Params(1, 1_000, 10_000)]
    public int Subscribers { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _bench = BenchNode.Start();
        _sessions = new ClientSession[Subscribers];
        for (var i = 0; i < _sessions.Length; i++)
        {
            _sessions[i] = _bench.Subscribe(Payloads.Channel);
        }
        // One publication through the real broker: every subscription goes live and learns the epoch it continues in.
        var position = _bench.Publish(Payloads.Channel, Payloads.Json);
        (_offset, _epoch) = (position.Offset, position.Epoch);
        _events = _bench.Events;
        if (DrainAll() != Subscribers)
        {
            throw new InvalidOperationException("not every subscriber received the first publication");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _bench.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark]
    public int Publish()
    {
        // A fresh publication with the next offset, as the broker hands each one over (its encodings not yet made).
        var publication = new Publication(++_offset, Payloads.Json, null, 1_700_000_000_000) { AcceptedTimestamp = Stopwatch.GetTimestamp() };
        _events.HandlePublication(Payloads.Channel, publication, _epoch);
        var delivered = DrainAll();
        if (delivered != Subscribers)
        {
            throw new InvalidOperationException($"offset {_offset}: {delivered} of {Subscribers} subscribers got the push");
        }
        return delivered;
    }

    private int DrainAll()
    {
        var delivered = 0;
        foreach (var session in _sessions)
        {
            delivered += BenchNode.Drain(session);
        }
        return delivered;
    }
}
