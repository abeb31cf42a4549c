using System.Buffers;
using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Herald.AspNetCore.WebSockets;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.MicroBench;

/// <summary>
/// The WebSocket writer's batch (<see cref="FrameBatch"/>, the code its write loop runs): N pushes queued on a
/// connection's <see cref="OutboundQueue"/>, then taken as one frame — header and payload in a pooled buffer, several
/// messages joined with <c>\n</c>, with each push's stamp kept for the latency metric — and released as the
/// loop does after the send. Divide by N for the cost per message; any allocation here is one per frame or per message.
/// </summary>
[MemoryDiagnoser]
public class WriterBatchBenchmarks
{
    private OutboundQueue _queue = null!;
    private byte[] _push = [];
    private long _stamp;

    [Params(1, 16, 256)]
    public int Messages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _queue = new OutboundQueue(10_000, 8L * 1024 * 1024, static () => throw new InvalidOperationException("the benchmark's queue overflowed"));
        var publication = new Publication(42, Payloads.Json, null, 1_700_000_000_000);
        _push = ProtocolWriter.EncodePush(Payloads.Channel, publication);
        _stamp = Stopwatch.GetTimestamp();
    }

    [Benchmark]
    public long QueueAndTakeOneFrame()
    {
        for (var i = 0; i < Messages; i++)
        {
            _queue.TryEnqueue(_push, _stamp);
        }
        var reader = _queue.Reader;
        if (!reader.TryRead(out var first))
        {
            throw new InvalidOperationException("nothing queued");
        }
        long[]? stamps = null;
        var frame = FrameBatch.Take(reader, first, text: true, ref stamps);
        var length = frame.PayloadLength;
        frame.Release();
        _queue.Written(frame.Taken);
        if (frame.Pushes != Messages || length != (Messages * (_push.Length + 1)) - 1)
        {
            throw new InvalidOperationException($"{Messages} pushes queued, a frame of {frame.Pushes} pushes and {length} bytes taken");
        }
        ArrayPool<long>.Shared.Return(stamps!);
        return frame.Taken;
    }
}
