using System.Collections.Concurrent;

namespace Herald.Bench.Kestrel;

/// <summary>One connection as the hub sees it: something that takes a message's wire bytes.</summary>
internal abstract class Subscriber
{
    /// <summary>The channels this connection joined, so that it leaves them when it ends.</summary>
    public List<Hub.Channel> Joined { get; } = [];

    /// <summary>
    /// Sends one message's wire bytes (what the hub's encoding made of it; the same array for every subscriber). Never
    /// throws: a connection that cannot take it is ending, and its read loop removes it from the hub.
    /// </summary>
    public abstract ValueTask SendAsync(byte[] wire);
}

/// <summary>
/// The in-memory channel list: no history, no queue. A publication is encoded once, by <paramref name="toWire"/>, into
/// the bytes every subscriber is sent.
/// </summary>
internal sealed class Hub(Func<byte[], byte[]> toWire)
{
    internal sealed class Channel
    {
        /// <summary>
        /// One publication at a time per channel, so offsets go out in order to every subscriber. Waited for
        /// asynchronously: publishers queued behind a fan-out hold no thread (a lock would block the thread pool).
        /// </summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);

        /// <summary>Written under <see cref="Gate"/>.</summary>
#pragma warning disable CA1051 // a field, for Interlocked
        public ulong Offset;
#pragma warning restore CA1051

        private volatile Subscriber[] _subscribers = [];

        // Copy on write: a publication walks a snapshot, joins and leaves (rare) copy it under the channel's lock.
        public Subscriber[] Subscribers
        {
            get => _subscribers;
            set => _subscribers = value;
        }
    }

    private readonly ConcurrentDictionary<string, Channel> _channels = new(StringComparer.Ordinal);

    /// <summary>
    /// Joins <paramref name="subscriber"/> to the channel; returns the channel's offset at that moment (a floor keeps no
    /// history, so a publication in flight may or may not reach it; nothing is recovered either way).
    /// </summary>
    public ulong Subscribe(string name, Subscriber subscriber)
    {
        var channel = _channels.GetOrAdd(name, static _ => new Channel());
        lock (channel)
        {
            if (!subscriber.Joined.Contains(channel))
            {
                channel.Subscribers = [.. channel.Subscribers, subscriber];
                subscriber.Joined.Add(channel);
            }
        }
        return Interlocked.Read(ref channel.Offset);
    }

    /// <summary>Takes an ended connection out of every channel it joined.</summary>
    public static void Remove(Subscriber subscriber)
    {
        foreach (var channel in subscriber.Joined)
        {
            lock (channel)
            {
                channel.Subscribers = [.. channel.Subscribers.Where(s => s != subscriber)];
            }
        }
    }

    /// <summary>
    /// Gives the publication the channel's next offset and starts its send to every subscriber, then waits for the sends
    /// that did not complete at once (a publisher outpacing a subscriber slows down rather than piling sends up).
    /// </summary>
    public async Task<ulong> PublishAsync(string name, Func<ulong, byte[]> encode)
    {
        var channel = _channels.GetOrAdd(name, static _ => new Channel());
        List<Task>? pending = null;
        ulong offset;
        await channel.Gate.WaitAsync();
        try
        {
            offset = Interlocked.Increment(ref channel.Offset);
            var wire = toWire(encode(offset));
            foreach (var subscriber in channel.Subscribers)
            {
                var sent = subscriber.SendAsync(wire);
                if (!sent.IsCompletedSuccessfully)
                {
                    (pending ??= []).Add(sent.AsTask());
                }
            }
        }
        finally
        {
            channel.Gate.Release();
        }
        if (pending is not null)
        {
            await Task.WhenAll(pending);
        }
        return offset;
    }
}
