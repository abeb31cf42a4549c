namespace Herald.AspNetCore.WebSockets;

/// <summary>The connection's side of <see cref="KeepAliveWheel"/>: its place on the wheel and its outstanding ping.</summary>
internal sealed partial class WebSocketConnection : IKeepAliveMember
{
    /// <summary>An unmasked ping frame with no payload (RFC 6455 5.5.2): the peer answers with an empty pong.</summary>
    private static readonly byte[] PingFrame = [0x89, 0x00];

    /// <inheritdoc/>
    public int KeepAliveSlot { get; set; } = -1;

    /// <inheritdoc/>
    public int KeepAliveIndex { get; set; }

    // The tick the outstanding ping went out at (0: none), and how many reads the stream had made then. Touched only
    // by the wheel's tick, which never runs twice at once.
    private long _pingSentAt;
    private int _pingReads;

    /// <summary>The wheel's timeout pass: drops the connection if its ping has gone unanswered for the timeout.</summary>
    public void CheckKeepAlive(KeepAliveWheel keepAlive)
    {
        if (_pingSentAt != 0 && _stream.ReadCount == _pingReads && keepAlive.Now - _pingSentAt >= keepAlive.TimeoutTicks)
        {
            Abort(); // as a dead peer: no close frame, reported as 1006
        }
    }

    /// <summary>The wheel's ping pass: a connection whose last ping is answered (or that has none) gets a new one.</summary>
    public void KeepAliveDue(KeepAliveWheel keepAlive)
    {
        if (_pingSentAt != 0 && _stream.ReadCount == _pingReads && keepAlive.TimeoutTicks != KeepAliveWheel.NoTimeout)
        {
            if (keepAlive.Now - _pingSentAt >= keepAlive.TimeoutTicks)
            {
                Abort();
            }
            // Otherwise the timeout is longer than the interval and still running: one ping at a time.
            return;
        }
        // The count is taken before the ping goes out: with the transport inline the ping is on the wire when
        // TrySendPing returns, and the peer's pong may already have been read (a count taken after would include it,
        // and the answered ping would look unanswered).
        var reads = _stream.ReadCount;
        if (TrySendPing())
        {
            _pingSentAt = keepAlive.Now;
            _pingReads = reads;
        }
    }

    /// <summary>
    /// Writes a ping unless a frame is being written (that connection is busy; it gets its ping next time round) or the
    /// connection is closing. Pings go straight to Kestrel's output under the stream's write lock, as data frames do.
    /// </summary>
    private bool TrySendPing()
    {
        if (Closing || _abort.IsCancellationRequested)
        {
            return false;
        }
        try
        {
            if (!_stream.TryEnterWrite())
            {
                return false;
            }
            ValueTask pending;
            try
            {
                if (!_stream.CanWriteData)
                {
                    _stream.ExitWrite();
                    return false;
                }
                pending = _stream.WriteFrameAsync(PingFrame, CancellationToken.None);
            }
            catch
            {
                _stream.ExitWrite();
                throw;
            }
            if (pending.IsCompletedSuccessfully)
            {
                _stream.ExitWrite();
            }
            else
            {
                _ = ExitWriteWhenWrittenAsync(pending);
            }
            return true;
        }
        catch (Exception ex) when (IsWriteFailure(ex))
        {
            return false; // the connection is ending; its reader finds out
        }
    }

    /// <summary>A ping the peer is slow to take (its output is full) keeps the write lock until Kestrel has it.</summary>
    private async Task ExitWriteWhenWrittenAsync(ValueTask pending)
    {
        try
        {
            await pending;
        }
        catch (Exception ex) when (IsWriteFailure(ex))
        {
            Log.WriteEnded(_logger, _session.ClientId, ex.Message);
        }
        finally
        {
            _stream.ExitWrite();
        }
    }
}
