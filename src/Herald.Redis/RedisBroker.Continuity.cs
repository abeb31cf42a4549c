using System.Globalization;
using System.Threading.Channels;
using Herald.Brokers;
using Herald.Protocol;
using StackExchange.Redis;

namespace Herald.Redis;

/// <summary>No silent loss: what the broker delivered per channel, and how it fills what Pub/Sub did not bring.</summary>
public sealed partial class RedisBroker
{
    /// <summary>How many publications one read of history brings when filling a gap.</summary>
    private const int FillBatch = 512;

    private static readonly RedisValue[] HeadFields = ["head", "epoch"];

    private readonly Channel<bool> _checkRequests = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationToken _stoppingToken;
    private IConnectionMultiplexer? _events;
    private Task? _checking;
    private long _filled;

    /// <summary>How many publications this broker delivered from history because Pub/Sub did not bring them (for tests).</summary>
    internal long FilledCount => Interlocked.Read(ref _filled);

    /// <summary>How many position checks have completed (for tests).</summary>
    internal long ChecksCompleted => Interlocked.Read(ref _checks);

    private long _checks;

    private void StartChecking(IConnectionMultiplexer multiplexer)
    {
        if (Interlocked.CompareExchange(ref _events, multiplexer, null) is not null)
        {
            return;
        }
        multiplexer.ConnectionFailed += OnConnectionFailed;
        multiplexer.ConnectionRestored += OnConnectionRestored;
        _checking = Task.Run(() => CheckLoopAsync(_stoppingToken));
    }

    private async Task StopCheckingAsync()
    {
        if (_events is { } multiplexer)
        {
            multiplexer.ConnectionFailed -= OnConnectionFailed;
            multiplexer.ConnectionRestored -= OnConnectionRestored;
        }
        await _stopping.CancelAsync();
        if (_checking is { } checking)
        {
            try
            {
                await checking;
            }
            catch (OperationCanceledException)
            {
            }
        }
        _stopping.Dispose();
    }

    private void OnConnectionFailed(object? sender, ConnectionFailedEventArgs e) =>
        RedisLog.ConnectionFailed(_logger, e.ConnectionType, e.FailureType, e.Exception);

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        // Whatever was published while the connection was down never reached us by Pub/Sub: look now rather than at
        // the next tick. Both connection types count: with RESP3 one connection carries Pub/Sub too.
        RedisLog.ConnectionRestored(_logger, e.ConnectionType);
        _checkRequests.Writer.TryWrite(true);
    }

    /// <summary>Checks positions every interval, and at once when asked (a connection restored); one check at a time.</summary>
    private async Task CheckLoopAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            bool restored;
            using (var wait = CancellationTokenSource.CreateLinkedTokenSource(stopping))
            {
                var tick = Task.Delay(_positionCheckInterval, wait.Token);
                var asked = _checkRequests.Reader.WaitToReadAsync(wait.Token).AsTask();
                await Task.WhenAny(tick, asked);
                await wait.CancelAsync();
                restored = _checkRequests.Reader.TryRead(out _);
            }
            if (stopping.IsCancellationRequested)
            {
                return;
            }
            try
            {
                if (Volatile.Read(ref _control) is null)
                {
                    await TrySubscribeControlAsync(await _connection.GetAsync(stopping));
                }
                await CheckPositionsAsync(restored, stopping);
            }
            catch (Exception ex) when (RedisErrors.IsUnavailable(ex) || ex is BrokerUnavailableException)
            {
                RedisLog.PositionCheckFailed(_logger, ex);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // The loop must survive anything, or holes would go unnoticed for the rest of the process's life.
                RedisLog.PositionCheckFailed(_logger, ex);
            }
            Interlocked.Increment(ref _checks);
        }
    }

    /// <summary>Reads the heads of all subscribed channels in one pipelined batch and fills or renews where they differ.</summary>
    /// <param name="restored">A connection was just restored: what is missing now was lost. Otherwise only what was
    /// already published at the previous check counts as missing, so publications still on their way by Pub/Sub (a
    /// busy channel always has some) are not read from history for nothing; a lost one is found within two intervals.</param>
    /// <param name="cancellationToken">Stops the check.</param>
    private async Task CheckPositionsAsync(bool restored, CancellationToken cancellationToken)
    {
        var states = _subscriptions.Values.Where(s => s.Active).ToArray();
        if (states.Length == 0)
        {
            return;
        }
        var multiplexer = await _connection.GetAsync(cancellationToken);
        var batch = multiplexer.GetDatabase().CreateBatch();
        var reads = new Task<RedisValue[]>[states.Length];
        for (var i = 0; i < states.Length; i++)
        {
            reads[i] = batch.HashGetAsync(_keys.Meta(states[i].Channel), HeadFields);
        }
        batch.Execute();
        await RedisErrors.GuardAsync(Task.WhenAll(reads), cancellationToken);
        for (var i = 0; i < states.Length; i++)
        {
            var (head, epoch) = ToPosition(reads[i].Result);
            await CheckChannelAsync(states[i], head, epoch, restored, cancellationToken);
        }
    }

    private async Task CheckChannelAsync(ChannelState state, ulong head, string? epoch, bool restored, CancellationToken cancellationToken)
    {
        await state.Gate.WaitAsync(cancellationToken);
        try
        {
            var missingUpTo = head;
            if (!restored)
            {
                missingUpTo = state.CheckedEpoch == epoch ? Math.Min(head, state.CheckedHead) : 0;
                (state.CheckedHead, state.CheckedEpoch) = (head, epoch);
            }
            if (!state.Active || _handler is null)
            {
                return;
            }
            if (epoch is null)
            {
                // The log is gone (Redis restarted without persistence, the key evicted). Nothing to deliver: its next
                // publication or read makes a new random epoch, which the node's subscriptions answer with 4004.
                if (state.Epoch is { } lost && !state.LossReported)
                {
                    state.LossReported = true;
                    RedisLog.LogLost(_logger, state.Channel, lost);
                }
                return;
            }
            state.LossReported = false;
            if (epoch != state.Epoch)
            {
                // A new epoch (or the first, when the channel had none at subscribe): all of it is news to this node.
                if (missingUpTo > 0)
                {
                    await FillAsync(state, 0, missingUpTo, epoch, cancellationToken);
                }
                return;
            }
            if (missingUpTo > state.Offset)
            {
                await FillAsync(state, state.Offset, missingUpTo, epoch, cancellationToken);
            }
            else if (head < state.Offset)
            {
                await RenewEpochAsync(state, cancellationToken);
            }
        }
        finally
        {
            state.Gate.Release();
        }
    }

    /// <summary>Called under the channel's gate when Redis's head is lower than what was delivered in the same epoch.</summary>
    private async Task RenewEpochAsync(ChannelState state, CancellationToken cancellationToken)
    {
        var database = (await _connection.GetAsync(cancellationToken)).GetDatabase();
        var delivered = state.Offset;
        var oldEpoch = state.Epoch!;
        RedisValue[] args = [oldEpoch, delivered.ToString(CultureInfo.InvariantCulture), NewEpoch()];
        var result = (RedisResult[])(await RedisErrors.GuardAsync(database.ScriptEvaluateAsync(RedisScripts.RenewEpoch, [_keys.Meta(state.Channel), _keys.Stream(state.Channel)], args), cancellationToken))!;
        var head = (ulong)result[0];
        var epoch = (string)result[1]!;
        // Only an epoch made here is known to hold nothing past the head; one another node made may already have
        // publications on their way to us, which the next message or check delivers as a new epoch.
        if ((long)result[2] == 1)
        {
            RedisLog.EpochRenewed(_logger, state.Channel, oldEpoch, head, delivered, epoch);
            // The new epoch's history up to the head is what survived; nothing in it is news to this node.
            state.Offset = head;
            state.Epoch = epoch;
        }
    }

    /// <summary>Delivers one Pub/Sub message, after whatever is missing before it.</summary>
    private async Task OnMessageAsync(ChannelState state, ChannelMessage message)
    {
        if (!state.Active || _handler is null)
        {
            return;
        }
        var payload = (byte[]?)message.Message;
        if (payload is null || !PublicationMessage.TryParse(payload, out var publication, out var epoch))
        {
            RedisLog.MalformedMessage(_logger, state.Channel);
            return;
        }
        await state.Gate.WaitAsync();
        try
        {
            if (!state.Active)
            {
                return;
            }
            var sameEpoch = epoch == state.Epoch;
            if (sameEpoch && publication!.Offset <= state.Offset)
            {
                return; // already delivered, from history
            }
            // In a new epoch (or the first) everything from offset 1 is news.
            var after = sameEpoch ? state.Offset : 0;
            if (publication!.Offset > after + 1)
            {
                try
                {
                    await FillAsync(state, after, publication.Offset - 1, epoch!, _stoppingToken);
                }
                catch (Exception ex)
                {
                    // Whatever went wrong, delivering what follows is still right: the subscriptions see the offsets
                    // skip and close with 4004, where dropping the message too would only widen the hole.
                    RedisLog.FillFailed(_logger, state.Channel, ex);
                }
            }
            Deliver(state, publication, epoch!);
        }
        finally
        {
            state.Gate.Release();
        }
    }

    /// <summary>
    /// Delivers, under the channel's gate, the publications of <paramref name="epoch"/> after <paramref name="after"/> up
    /// to <paramref name="upTo"/> that history still holds, in order. Whatever history no longer holds is skipped: the
    /// node's subscriptions see the offsets jump and close their clients with 4004, so they recover with <c>since</c>.
    /// </summary>
    private async Task FillAsync(ChannelState state, ulong after, ulong upTo, string epoch, CancellationToken cancellationToken)
    {
        var database = (await _connection.GetAsync(cancellationToken)).GetDatabase();
        var from = after + 1;
        var filled = 0L;
        var complete = true;
        while (after < upTo)
        {
            var wanted = (int)Math.Min(FillBatch, upTo - after);
            RedisValue[] args = [after.ToString(CultureInfo.InvariantCulture), wanted];
            var result = (RedisResult[])(await RedisErrors.GuardAsync(
                database.ScriptEvaluateAsync(RedisScripts.Range, [_keys.Meta(state.Channel), _keys.Stream(state.Channel)], args), cancellationToken))!;
            if ((string)result[1]! != epoch)
            {
                // The log changed epoch since: what it holds is not the missing part of this one.
                complete = false;
                break;
            }
            var entries = (RedisResult[])result[2]!;
            if (entries.Length == 0)
            {
                complete = false;
                break;
            }
            foreach (var entry in entries)
            {
                var publication = PublicationMessage.FromStreamEntry(entry);
                if (publication.Offset > upTo)
                {
                    after = upTo;
                    break;
                }
                if (publication.Offset != after + 1)
                {
                    complete = false; // trimmed: the start of the gap is gone
                }
                Deliver(state, publication, epoch);
                filled++;
                after = publication.Offset;
            }
        }
        Interlocked.Add(ref _filled, filled);
        if (complete)
        {
            RedisLog.GapFilled(_logger, state.Channel, epoch, from, upTo);
        }
        else
        {
            RedisLog.GapNotFillable(_logger, state.Channel, epoch, from, upTo);
        }
    }

    /// <summary>Hands one publication to the node and remembers it as delivered; called under the channel's gate.</summary>
    private void Deliver(ChannelState state, Publication publication, string epoch)
    {
        state.Offset = publication.Offset;
        state.Epoch = epoch;
        if (!state.Active || _handler is not { } handler)
        {
            return;
        }
        try
        {
            handler.HandlePublication(state.Channel, publication, epoch);
        }
        catch (Exception ex)
        {
            // The handler must not throw; if it does, the channel must still go on to the next publication.
            RedisLog.HandlerFailed(_logger, state.Channel, publication.Offset, ex);
        }
    }

    /// <summary>The head and epoch of a meta hash (<c>HMGET head epoch</c>); a missing hash has no epoch.</summary>
    private static (ulong Offset, string? Epoch) ToPosition(RedisValue[] values)
    {
        var epoch = values[1].IsNull ? null : (string?)values[1];
        var head = values[0].IsNull ? 0UL : ulong.Parse((string)values[0]!, CultureInfo.InvariantCulture);
        return (head, epoch);
    }

    /// <summary>One subscribed channel: its Pub/Sub queue and what was delivered from it.</summary>
    private sealed class ChannelState(string channel, ChannelMessageQueue queue, (ulong Offset, string? Epoch) start)
    {
        public string Channel { get; } = channel;

        public ChannelMessageQueue Queue { get; } = queue;

        /// <summary>Held while a message is delivered or the channel is checked, so the two never interleave.</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);

        public volatile bool Active = true;

        /// <summary>The last offset delivered (or the head when subscribed); guarded by <see cref="Gate"/>.</summary>
        public ulong Offset { get; set; } = start.Offset;

        /// <summary>The epoch of <see cref="Offset"/>; <see langword="null"/> when the channel had none at subscribe.</summary>
        public string? Epoch { get; set; } = start.Epoch;

        /// <summary>The head and epoch the previous periodic check read; guarded by <see cref="Gate"/>.</summary>
        public ulong CheckedHead { get; set; }

        /// <inheritdoc cref="CheckedHead"/>
        public string? CheckedEpoch { get; set; }

        /// <summary>Whether the loss of this channel's log has been logged (once per loss).</summary>
        public bool LossReported { get; set; }
    }
}
