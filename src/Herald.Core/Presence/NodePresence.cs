using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text.Json;
using Herald.Protocol;

namespace Herald.Presence;

/// <summary>
/// Who is present in which channel on this node: WebSocket subscribers (present while subscribed) and polling clients
/// (present while their lease lasts: a poll's wait plus <see cref="HeraldOptions.PollPresenceTimeout"/>).
/// </summary>
/// <remarks>
/// Refreshing an existing lease with the same user and info is lock-free and allocates nothing, because every poll of
/// a polling client does it. Expired leases are never listed; they are removed when a presence read meets them and by
/// a periodic sweep, so a channel nobody reads again does not keep them. Each channel holds at most
/// <see cref="HeraldOptions.MaxPollPresencePerChannel"/> leases, so invented client ids cannot grow memory without bound.
/// </remarks>
internal sealed class NodePresence : IDisposable
{
    private const long Dead = long.MinValue;

    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, ClientInfo>> _subscribers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ChannelLeases> _leases = new(StringComparer.Ordinal);
    private readonly HeraldOptions _options;
    private readonly TimeProvider _time;
    private ITimer? _sweeper;
    private int _sweeperStarted;

    public NodePresence(HeraldOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
    }

    /// <summary>Live poll leases on this node, all channels together.</summary>
    public int PollLeaseCount => _leases.Values.Sum(c => Volatile.Read(ref c.Count));

    public IReadOnlyCollection<ClientInfo> Get(string channel)
    {
        _subscribers.TryGetValue(channel, out var subscribers);
        if (!_leases.TryGetValue(channel, out var leases))
        {
            return subscribers is null ? [] : subscribers.Values.ToArray();
        }
        var now = Now;
        var members = subscribers is null ? new List<ClientInfo>() : new List<ClientInfo>(subscribers.Values);
        var expired = false;
        foreach (var (client, lease) in leases.Leases)
        {
            if (lease.IsExpired(now))
            {
                expired = true;
                continue;
            }
            // One entry per client id; a WebSocket subscriber's server-assigned id wins over a poll lease that claims it.
            if (subscribers is null || !subscribers.ContainsKey(client))
            {
                members.Add(Volatile.Read(ref lease.State).Member);
            }
        }
        if (expired)
        {
            Sweep(channel, leases, now);
        }
        return members;
    }

    public void AddSubscriber(string channel, ClientInfo client) =>
        _subscribers.GetOrAdd(channel, static _ => new(StringComparer.Ordinal))[client.Client] = client;

    public void RemoveSubscriber(string channel, ClientInfo client)
    {
        if (_subscribers.TryGetValue(channel, out var members) && members.TryRemove(client.Client, out _) && members.IsEmpty)
        {
            // A member added between the check and the removal would be lost, so remove only the exact empty set.
            _subscribers.TryRemove(new KeyValuePair<string, ConcurrentDictionary<string, ClientInfo>>(channel, members));
        }
    }

    /// <summary>Creates or extends the poll lease of (<paramref name="channel"/>, <paramref name="client"/>).</summary>
    /// <returns>
    /// Whether the client is now listed: <see langword="false"/> when the channel already holds the most leases allowed,
    /// or when another user's live lease holds that client id (it is not taken over).
    /// </returns>
    public bool TouchLease(string channel, string client, string user, JsonElement? info, TimeSpan wait)
    {
        var expires = Now + (wait + _options.PollPresenceTimeout).Ticks;
        if (_leases.TryGetValue(channel, out var leases)
            && leases.Leases.TryGetValue(client, out var lease)
            && Matches(Volatile.Read(ref lease.State), user, info)
            && lease.TryExtend(expires))
        {
            return true; // the common case: the same client polling again
        }
        return TouchSlow(channel, client, user, info, expires);
    }

    private bool TouchSlow(string channel, string client, string user, JsonElement? info, long expires)
    {
        while (true)
        {
            var leases = _leases.GetOrAdd(channel, static _ => new ChannelLeases());
            lock (leases.Gate)
            {
                if (leases.Removed)
                {
                    continue; // lost a race with the sweep that dropped the empty channel; take the fresh entry
                }
                var now = Now;
                if (leases.Leases.TryGetValue(client, out var existing))
                {
                    var state = Volatile.Read(ref existing.State);
                    if (!existing.IsExpired(now) && !string.Equals(state.Member.User, user, StringComparison.Ordinal))
                    {
                        return false;
                    }
                    if (!Matches(state, user, info))
                    {
                        Volatile.Write(ref existing.State, LeaseState.Of(client, user, info));
                    }
                    // Dead leases are removed under this lock, so this one is alive and the extension holds.
                    existing.TryExtend(expires);
                    return true;
                }
                if (leases.Count >= _options.MaxPollPresencePerChannel)
                {
                    SweepLocked(channel, leases, now);
                    if (leases.Count >= _options.MaxPollPresencePerChannel)
                    {
                        return false;
                    }
                }
                leases.Leases[client] = new Lease(LeaseState.Of(client, user, info), expires);
                Volatile.Write(ref leases.Count, leases.Count + 1);
            }
            StartSweeper();
            return true;
        }
    }

    /// <summary>
    /// Ends the lease of (<paramref name="channel"/>, <paramref name="client"/>) now, if <paramref name="user"/> holds it
    /// (another user's lease is left alone). A poll of that client still in flight recreates it, which is right: it
    /// is polling.
    /// </summary>
    public void EndLease(string channel, string client, string user)
    {
        if (!_leases.TryGetValue(channel, out var leases) || !leases.Leases.ContainsKey(client))
        {
            return;
        }
        lock (leases.Gate)
        {
            if (leases.Leases.TryGetValue(client, out var lease)
                && string.Equals(Volatile.Read(ref lease.State).Member.User, user, StringComparison.Ordinal)
                && lease.Kill())
            {
                leases.Leases.TryRemove(new KeyValuePair<string, Lease>(client, lease));
                Volatile.Write(ref leases.Count, leases.Count - 1);
            }
            if (leases.Count == 0 && !leases.Removed)
            {
                leases.Removed = true;
                _leases.TryRemove(new KeyValuePair<string, ChannelLeases>(channel, leases));
            }
        }
    }

    /// <summary>Removes every expired lease of every channel; the periodic sweep.</summary>
    public void SweepAll()
    {
        var now = Now;
        foreach (var (channel, leases) in _leases)
        {
            Sweep(channel, leases, now);
        }
    }

    public void Dispose() => _sweeper?.Dispose();

    private long Now => _time.GetUtcNow().UtcTicks;

    private void StartSweeper()
    {
        if (Interlocked.Exchange(ref _sweeperStarted, 1) == 0)
        {
            // Created with the first lease, so a node whose clients never poll with an id has no timer.
            var period = TimeSpan.FromTicks(Math.Clamp(_options.PollPresenceTimeout.Ticks, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute));
            _sweeper = _time.CreateTimer(static state => ((NodePresence)state!).SweepAll(), this, period, period);
        }
    }

    private void Sweep(string channel, ChannelLeases leases, long now)
    {
        lock (leases.Gate)
        {
            SweepLocked(channel, leases, now);
        }
    }

    private void SweepLocked(string channel, ChannelLeases leases, long now)
    {
        foreach (var (client, lease) in leases.Leases)
        {
            if (lease.TryKill(now))
            {
                leases.Leases.TryRemove(new KeyValuePair<string, Lease>(client, lease));
                Volatile.Write(ref leases.Count, leases.Count - 1);
            }
        }
        if (leases.Count == 0 && !leases.Removed)
        {
            leases.Removed = true;
            _leases.TryRemove(new KeyValuePair<string, ChannelLeases>(channel, leases));
        }
    }

    private static bool Matches(LeaseState state, string user, JsonElement? info) =>
        string.Equals(state.Member.User, user, StringComparison.Ordinal)
        && (info is { } i
            ? state.RawInfo is { } raw && JsonMarshal.GetRawUtf8Value(i).SequenceEqual(raw)
            : state.RawInfo is null);

    private sealed class ChannelLeases
    {
        public readonly Lock Gate = new();
        public readonly ConcurrentDictionary<string, Lease> Leases = new(StringComparer.Ordinal);

        /// <summary>Live entries in <see cref="Leases"/>; changed under <see cref="Gate"/> (ConcurrentDictionary.Count takes every lock).</summary>
        public int Count;

        public bool Removed;
    }

    /// <summary>What a lease lists, and the info's bytes as the client sent them (to recognise an unchanged info cheaply).</summary>
    private sealed record LeaseState(ClientInfo Member, byte[]? RawInfo)
    {
        public static LeaseState Of(string client, string user, JsonElement? info) =>
            info is { } i
                ? new LeaseState(new ClientInfo(user, client) { Info = i.Clone() }, JsonMarshal.GetRawUtf8Value(i).ToArray())
                : new LeaseState(new ClientInfo(user, client), null);
    }

    private sealed class Lease(LeaseState state, long expires)
    {
        public LeaseState State = state;

        /// <summary>UTC ticks after which the lease is over; <see cref="Dead"/> once it has been removed.</summary>
        private long _expires = expires;

        public bool IsExpired(long now) => Volatile.Read(ref _expires) < now;

        /// <summary>Moves the end later (never earlier); fails only on a lease the sweep has removed.</summary>
        public bool TryExtend(long expires)
        {
            while (true)
            {
                var current = Volatile.Read(ref _expires);
                if (current == Dead)
                {
                    return false;
                }
                if (current >= expires || Interlocked.CompareExchange(ref _expires, expires, current) == current)
                {
                    return true;
                }
            }
        }

        /// <summary>Marks an expired lease dead; fails when it is live or a poll extended it meanwhile.</summary>
        public bool TryKill(long now)
        {
            var current = Volatile.Read(ref _expires);
            return current != Dead && current < now && Interlocked.CompareExchange(ref _expires, Dead, current) == current;
        }

        /// <summary>Marks the lease dead, live or not; fails only when it already is.</summary>
        public bool Kill()
        {
            while (true)
            {
                var current = Volatile.Read(ref _expires);
                if (current == Dead)
                {
                    return false;
                }
                if (Interlocked.CompareExchange(ref _expires, Dead, current) == current)
                {
                    return true;
                }
            }
        }
    }
}
