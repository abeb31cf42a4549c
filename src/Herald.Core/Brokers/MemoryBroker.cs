using System.Collections.Concurrent;
using System.Security.Cryptography;
using Herald.Protocol;

namespace Herald.Brokers;

/// <summary>The embedded broker: every channel's log lives in this process's memory.</summary>
/// <remarks>
/// A channel's epoch is fixed for the life of the process, so a restart is seen by clients as a new epoch
/// (<c>recovered:false</c>). It is derived from a per-process seed and the channel name, so reading or subscribing
/// to a channel that was never published to allocates nothing: only channels with publications have a log. Publications are appended and handed to the handler under the channel's lock, which
/// is what makes delivery order equal offset order.
/// </remarks>
public sealed class MemoryBroker : IBroker
{
    private readonly ConcurrentDictionary<string, ChannelLog> _logs = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly byte[] _epochSeed = RandomNumberGenerator.GetBytes(16);
    private IBrokerEventHandler? _handler;

    /// <summary>Creates the broker.</summary>
    public MemoryBroker(TimeProvider? timeProvider = null) => _time = timeProvider ?? TimeProvider.System;

    /// <inheritdoc/>
    public ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default)
    {
        _handler = handler ?? throw new ArgumentNullException(nameof(handler));
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, CancellationToken cancellationToken = default)
    {
        var handler = _handler ?? throw new InvalidOperationException("Start the broker before publishing.");
        var log = _logs.GetOrAdd(channel, static (name, self) => new ChannelLog(self.EpochOf(name)), this);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (log)
        {
            var publication = new Publication(log.Head + 1, data, info, now);
            log.Head = publication.Offset;
            log.Append(publication, history, now);
            handler.HandlePublication(channel, publication, log.Epoch);
            return ValueTask.FromResult(new StreamPosition(publication.Offset, log.Epoch));
        }
    }

    /// <inheritdoc/>
    public ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default)
    {
        if (!_logs.TryGetValue(channel, out var log))
        {
            return ValueTask.FromResult(new HistoryResult(new StreamPosition(0, EpochOf(channel)), []));
        }
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (log)
        {
            log.Trim(history, now);
            var position = new StreamPosition(log.Head, log.Epoch);
            if (limit <= 0 || log.Entries.Count == 0)
            {
                return ValueTask.FromResult(new HistoryResult(position, []));
            }
            var result = new List<Publication>(Math.Min(limit, log.Entries.Count));
            if (afterOffset is { } after)
            {
                foreach (var publication in log.Entries)
                {
                    if (publication.Offset > after)
                    {
                        result.Add(publication);
                        if (result.Count == limit)
                        {
                            break;
                        }
                    }
                }
            }
            else
            {
                result.AddRange(log.Entries.Skip(Math.Max(0, log.Entries.Count - limit)));
            }
            return ValueTask.FromResult(new HistoryResult(position, result));
        }
    }

    /// <inheritdoc/>
    public ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private string EpochOf(string channel)
    {
        Span<byte> digest = stackalloc byte[32];
        HMACSHA256.HashData(_epochSeed, System.Text.Encoding.UTF8.GetBytes(channel), digest);
        return Convert.ToHexStringLower(digest[..4]);
    }

    private sealed class ChannelLog(string epoch)
    {
        public string Epoch { get; } = epoch;

        public ulong Head { get; set; }

        public Queue<Publication> Entries { get; } = new();

        public void Append(Publication publication, HistoryPolicy history, long now)
        {
            if (history.Size > 0)
            {
                Entries.Enqueue(publication);
            }
            Trim(history, now);
        }

        public void Trim(HistoryPolicy history, long now)
        {
            while (Entries.Count > history.Size)
            {
                Entries.Dequeue();
            }
            if (history.Ttl > TimeSpan.Zero)
            {
                var oldest = now - (long)history.Ttl.TotalMilliseconds;
                while (Entries.TryPeek(out var first) && first.Timestamp < oldest)
                {
                    Entries.Dequeue();
                }
            }
        }
    }
}
