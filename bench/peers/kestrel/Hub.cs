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
    internal sealed class Channel(string name)
    {
        public string Name { get; } = name;

        public ulong Offset { get; set; }

        // Copy on write: a publication walks a snapshot, joins and leaves (rare) copy it under the channel's lock.
        public Subscriber[] Subscribers { get; set; } = [];
    }

    private readonly ConcurrentDictionary<string, Channel> _channels = new(StringComparer.Ordinal);

    /// <summary>Joins <paramref name="subscriber"/> to the channel; returns the channel's offset at that moment.</summary>
    public ulong Subscribe(string name, Subscriber subscriber)
    {
        var channel = _channels.GetOrAdd(name, static n => new Channel(n));
        lock (channel)
        {
            if (!subscriber.Joined.Contains(channel))
            {
                channel.Subscribers = [.. channel.Subscribers, subscriber];
                subscriber.Joined.Add(channel);
            }
            return channel.Offset;
        }
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
    /// Gives the publication the channel's next offset and starts its send to every subscriber. Offsets are taken and
    /// sends started under the channel's lock, so every subscriber gets a channel's publications in offset order. Sends
    /// that did not complete at once are added to <paramref name="pending"/>.
    /// </summary>
    public ulong Publish(string name, Func<ulong, byte[]> encode, List<Task> pending)
    {
        var channel = _channels.GetOrAdd(name, static n => new Channel(n));
        lock (channel)
        {
            var offset = ++channel.Offset;
            var wire = toWire(encode(offset));
            foreach (var subscriber in channel.Subscribers)
            {
                var sent = subscriber.SendAsync(wire);
                if (!sent.IsCompletedSuccessfully)
                {
                    pending.Add(sent.AsTask());
                }
            }
            return offset;
        }
    }
}
