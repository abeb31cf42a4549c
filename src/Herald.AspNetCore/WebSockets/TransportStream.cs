using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// A connection's transport as the stream a handed-off WebSocket reads and writes (<see cref="WebSocketHandoff"/>): what
/// Kestrel's upgraded stream is for a WebSocket inside its request, without the request. A zero-byte read waits for data
/// and consumes none, so that an idle connection holds no buffer; and a read that has to wait is this stream itself
/// (<see cref="IValueTaskSource{TResult}"/>) rather than an async method's state machine, which an idle connection,
/// always waiting in one, would keep for good. One read at a time, as a WebSocket reads.
/// </summary>
internal sealed class TransportStream(IDuplexPipe transport) : Stream, IValueTaskSource<int>
{
    private ManualResetValueTaskSourceCore<int> _read;
    private ValueTaskAwaiter<ReadResult> _pending;
    private Memory<byte> _destination;
    private Action? _onRead;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Consumed exactly once: its result now if it has one, else through its awaiter in OnRead.
#pragma warning disable CA2012
        var reading = transport.Input.ReadAsync(cancellationToken);
#pragma warning restore CA2012
        if (reading.IsCompletedSuccessfully)
        {
            return new ValueTask<int>(Take(reading.Result, buffer.Span));
        }
        _read.Reset();
        _destination = buffer;
        _pending = reading.GetAwaiter();
        _pending.UnsafeOnCompleted(_onRead ??= OnRead);
        return new ValueTask<int>(this, _read.Version);
    }

    private void OnRead()
    {
        var pending = _pending;
        var destination = _destination;
        _pending = default;
        _destination = default;
        int count;
        try
        {
            count = Take(pending.GetResult(), destination.Span);
        }
        catch (Exception ex)
        {
            _read.SetException(ex);
            return;
        }
        _read.SetResult(count);
    }

    /// <summary>Copies what fits into <paramref name="destination"/> and consumes that much (nothing for a zero-byte read).</summary>
    private int Take(ReadResult result, Span<byte> destination)
    {
        var input = transport.Input;
        var data = result.Buffer;
        if (result.IsCanceled)
        {
            input.AdvanceTo(data.Start);
            throw new OperationCanceledException("the read was cancelled");
        }
        // Empty only at the end of input: a pipe's read completes with data, or when the writer has completed.
        var count = (int)Math.Min(data.Length, destination.Length);
        data.Slice(0, count).CopyTo(destination);
        input.AdvanceTo(data.GetPosition(count));
        return count;
    }

    int IValueTaskSource<int>.GetResult(short token) => _read.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _read.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _read.OnCompleted(continuation, state, token, flags);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var flushing = transport.Output.WriteAsync(buffer, cancellationToken);
        return flushing.IsCompletedSuccessfully ? ValueTask.CompletedTask : AwaitFlushAsync(flushing);
    }

    private static async ValueTask AwaitFlushAsync(ValueTask<FlushResult> flushing) => await flushing;

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) => transport.Output.FlushAsync(cancellationToken).AsTask();

    public override void Flush() => throw new NotSupportedException("async only");
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
