using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Herald.Protocol;

namespace Herald.MicroBench;

/// <summary>
/// Encoding one publication's push, once per publication whatever the number of subscribers: the framing alone (the
/// publication's own encoding already cached, as it is for every subscriber after the first), and the whole cost a
/// fresh publication pays in the fan-out through <see cref="PushFrames"/>.
/// </summary>
[MemoryDiagnoser]
public class PushEncodingBenchmarks
{
    private Publication _cached = null!;
    private ulong _offset;

    [GlobalSetup]
    public void Setup()
    {
        _cached = Fresh();
        _ = _cached.Json;
        _ = _cached.MsgPack;
    }

    private Publication Fresh() => new(++_offset, Payloads.Json, null, 1_700_000_000_000) { AcceptedTimestamp = Stopwatch.GetTimestamp() };

    /// <summary><c>{"push":{"channel":…,"pub":…}}</c> around the publication's cached JSON.</summary>
    [Benchmark]
    public byte[] JsonPush() => ProtocolWriter.EncodePush(Payloads.Channel, _cached);

    /// <summary>The same push as a MessagePack map, around the publication's cached MessagePack.</summary>
    [Benchmark]
    public byte[] MsgPackPush() => MsgPackCodec.EncodePush(Payloads.Channel, _cached);

    /// <summary>What the fan-out pays per publication on a channel whose subscribers all speak <c>herald.json</c>.</summary>
    [Benchmark]
    public byte[] FreshPublication_JsonFrames()
    {
        var frames = new PushFrames(Payloads.Channel, Fresh());
        return frames.For(WireEncoding.Json);
    }

    /// <summary>The same with subscribers of both protocols: each push encoded once.</summary>
    [Benchmark]
    public byte[] FreshPublication_BothFrames()
    {
        var frames = new PushFrames(Payloads.Channel, Fresh());
        _ = frames.For(WireEncoding.Json);
        return frames.For(WireEncoding.MsgPack);
    }
}
