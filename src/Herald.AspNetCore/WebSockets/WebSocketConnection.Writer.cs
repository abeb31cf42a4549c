using System.Buffers;
using System.Diagnostics;
using System.Net.WebSockets;
using Herald.Diagnostics;
using Herald.Sessions;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// The writing half of a WebSocket connection. There is no writer loop waiting on the queue: whoever queues a message
/// onto an idle connection (the fan-out, a command's reply) writes it at once, on its own thread, straight into
/// Kestrel's output, as one frame built here. So a delivery costs no thread hop and no wake-up, only a copy into the
/// connection's output pipe; Kestrel's socket queue sends the bytes. A write that cannot finish at once (the peer reads
/// slowly) continues asynchronously and keeps the writer until the queue is empty; while it is busy, messages
/// queued meanwhile wait and go out together, joined into one frame.
/// </summary>
internal sealed partial class WebSocketConnection
{
    /// <summary>1 while a writer owns the output (writing, or finishing the connection); 0 when idle.</summary>
    private int _writerBusy;

    /// <summary>Completed when the writer has finished for good: the close frame sent (or given up), or writing failed.</summary>
    private LazySignal _writerDone;

    /// <summary>What the frame being written holds: bytes taken from the queue, and its pushes' accepted-at stamps.</summary>
    /// <remarks>Only the writer, one at a time, touches these.</remarks>
    private FrameBatch _frame;
    private long[]? _stamps;
    private bool _holdsWriteLock;

    /// <summary>Set after an inline writer wrote a frame, so that it leaves what else is queued to the thread pool.</summary>
    private bool _wroteInline;

    /// <summary>
    /// Called by the outbound queue after each message, and by close and abort: starts a writer if none runs. During a
    /// fan-out the connection joins the fan-out's batch (written after the loop, chunked on the thread pool); otherwise
    /// (a command's reply, a recovery page) the thread that queued writes at once.
    /// </summary>
    private void OnQueued()
    {
        if (Interlocked.CompareExchange(ref _writerBusy, 1, 0) == 0)
        {
            if (DeliveryBatch.Current is { } batch)
            {
                batch.Add(this);
            }
            else
            {
                Write(inline: true);
            }
        }
    }

    /// <summary>The fan-out's batch reached this connection: it writes one frame here, and leaves any more to the pool.</summary>
    void IDeferredWriter.WriteDeferred() => Write(inline: true);

    /// <inheritdoc/>
    void IDeferredWriter.PrefetchState()
    {
        CachePrefetch.Object(_session);
        CachePrefetch.Object(_outbound);
        CachePrefetch.Object(_stream);
    }

    /// <summary>A writer handed to the thread pool when the one that queued a message should not write everything itself.</summary>
    void IThreadPoolWorkItem.Execute() => Write(inline: false);

    /// <summary>
    /// Writes what is queued while it owns the writer. Inline (on the thread that queued), it writes one frame and hands
    /// any more to the thread pool, so a fan-out to many connections is never held up by one with a backlog.
    /// </summary>
    private void Write(bool inline)
    {
        var queue = _session.Outbound;
        var reader = queue.Reader;
        try
        {
            while (true)
            {
                if (_abort.IsCancellationRequested)
                {
                    _ = FinishAsync(); // keeps the writer: nothing is written after an abort
                    return;
                }
                if (!reader.TryPeek(out _))
                {
                    if (queue.IsFinished)
                    {
                        _ = FinishAsync();
                        return;
                    }
                    _wroteInline = false;
                    Volatile.Write(ref _writerBusy, 0);
                    // A message queued between the look and the release found the writer busy and left it to us.
                    if ((!reader.TryPeek(out _) && !queue.IsFinished) || Interlocked.CompareExchange(ref _writerBusy, 1, 0) != 0)
                    {
                        return;
                    }
                    continue;
                }
                if (inline && _wroteInline)
                {
                    _wroteInline = false;
                    ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
                    return;
                }
                var pending = WriteFrame();
                if (!pending.IsCompleted)
                {
                    _ = CompleteAsync(pending);
                    return;
                }
                pending.GetAwaiter().GetResult();
                Completed();
                _wroteInline = inline;
            }
        }
        catch (Exception ex) when (IsWriteFailure(ex))
        {
            WriteFailed(ex);
        }
    }

    private static bool IsWriteFailure(Exception ex) =>
        ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException or WebSocketException;

    /// <summary>Finishes a write that could not complete at once, then goes on writing, off the thread that queued.</summary>
    private async Task CompleteAsync(ValueTask pending)
    {
        try
        {
            await pending;
            Completed();
        }
        catch (Exception ex) when (IsWriteFailure(ex))
        {
            WriteFailed(ex);
            return;
        }
        Write(inline: false);
    }

    private void Completed()
    {
        var frame = _frame;
        ExitWriteLock();
        if (frame.Taken == 0)
        {
            return; // nothing was written
        }
        _session.Outbound.Written(frame.Taken);
        _node.Metrics.Sent(DeliveryTransport.WebSocket, _messageType == WebSocketMessageType.Binary, frame.PayloadLength);
        // Latency ends when the transport has taken the frame, so a consumer slow to read shows in it.
        if (frame.Pushes > 0)
        {
            var sent = Stopwatch.GetTimestamp();
            for (var i = 0; i < frame.Pushes; i++)
            {
                _node.Metrics.DeliveryWritten(DeliveryTransport.WebSocket, _stamps![i], sent);
            }
            ArrayPool<long>.Shared.Return(_stamps!);
            _stamps = null;
        }
    }

    private void WriteFailed(Exception ex)
    {
        try
        {
            ExitWriteLock();
            Log.WriteEnded(_logger, _session.ClientId, ex.Message);
            // The writer stays taken, so nothing more is written; what is queued is dropped, so its memory goes now.
            _session.Outbound.Discard();
        }
        finally
        {
            _writerDone.Set();
        }
    }

    private void ExitWriteLock()
    {
        _frame.Release();
        _frame = default;
        if (_holdsWriteLock)
        {
            _holdsWriteLock = false;
            _stream.ExitWrite();
        }
    }

    /// <summary>
    /// Takes what is queued (up to <see cref="MaxBatchBytes"/>, or one larger message) and writes it as one data frame
    /// under the stream's write lock (released by <see cref="Completed"/>), so it never interleaves with the
    /// WebSocket's own control frames.
    /// </summary>
    private ValueTask WriteFrame()
    {
        if (!_stream.TryEnterWrite())
        {
            // The WebSocket is sending a control frame (a pong, a keep-alive ping): rare, so wait asynchronously.
            return WriteFrameWhenFreeAsync();
        }
        _holdsWriteLock = true;
        return WriteFrameLocked();
    }

    private async ValueTask WriteFrameWhenFreeAsync()
    {
        await _stream.EnterWriteAsync(_abort.Token);
        _holdsWriteLock = true;
        await WriteFrameLocked();
    }

    private ValueTask WriteFrameLocked()
    {
        if (!_stream.CanWriteData)
        {
            throw new OperationCanceledException("the stream refused a frame or has sent its close frame");
        }
        var reader = _session.Outbound.Reader;
        if (!reader.TryRead(out var first))
        {
            return ValueTask.CompletedTask; // the queue was discarded (a slow consumer) since the writer looked
        }
        _frame = FrameBatch.Take(reader, first, _messageType == WebSocketMessageType.Text, ref _stamps);
        return _stream.WriteFrameAsync(_frame.Frame, _abort.Token);
    }

    /// <summary>
    /// The queue has ended (the connection is closing): waits for the close decision and sends the close frame, unless
    /// the stream already sent one of its own. The writer stays taken.
    /// </summary>
    private async Task FinishAsync()
    {
        try
        {
            // The queue can end before Close has set the code: an overflowing queue discards itself first and only
            // then asks for close 4002. Wait for the decision, or the close frame would say 1000.
            await _closeDecided.WaitAsync().WaitAsync(_abort.Token);
            if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived && !_stream.Tripped)
            {
                await _socket.CloseOutputAsync((WebSocketCloseStatus)_closeCode, _closeReason, _abort.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            Log.WriteEnded(_logger, _session.ClientId, ex.Message);
        }
        finally
        {
            _writerDone.Set();
        }
    }
}
