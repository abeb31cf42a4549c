using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text.Json;
using Herald.Protocol;

namespace Herald.Presence;

/// <summary>
/// The in-memory presence store: one process, shared by every node in it. WebSocket subscribers are members, listed
/// while their node refreshes itself; polling clients hold leases (a poll's wait plus
/// <see cref="HeraldOptions.PollPresenceTimeout"/>).
/// </summary>
/// <remarks>
/// Refreshing an existing lease with the same user and info is lock-free and allocates nothing, because every poll of
/// a polling client does it. Expired leases are never listed; they are removed when a presence read meets them and by
/// a periodic sweep, so a channel nobody reads again does not keep them. Each channel holds at most
/// <see cref="HeraldOptions.MaxPollPresencePerChannel"/> leases, so invented client ids cannot grow memory without bound.
/// </remarks>
public sealed class MemoryPresenceStore : IPresenceStore
{
    private const long Dead = long.MinValue;

    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, Member>> _members = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ChannelLeases> _leases = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _nodes = new(StringComparer.Ordinal);
    private readonly int _maxLeasesPerChannel;
    private readonly TimeSpan _sweepPeriod;
    private readonly TimeProvider _time;
    private ITimer? _sweeper;
    private int _sweeperStarted;

    /// <summary>Creates a store with the limits of <paramref name="options"/>.</summary>
    public MemoryPresenceStore(HeraldOptions options, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _maxLeasesPerChannel = options.MaxPollPresencePerChannel;
        _sweepPeriod = TimeSpan.FromTicks(Math.Clamp(options.PollPresenceTimeout.Ticks, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute));
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Live poll leases, all channels together (expired ones not yet swept included).</summary>
    internal int LeaseCount => _leases.Values.Sum(c => Volatile.Read(ref c.Count));

    /// <inheritdoc/>
    public ValueTask<IReadOnlyCollection<ClientInfo>> ListAsync(string channel, CancellationToken cancellationToken = default) => ValueTask.FromResult<IReadOnlyCollection<ClientInfo>>(List(channel));

    /// <inheritdoc/>
    public ValueTask AddAsync(string channel, ClientInfo member, string node, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(member);
        // A node is alive from its first member on; its heartbeat keeps it so.
        _nodes.TryAdd(node, Now + TimeSpan.FromMinutes(1).Ticks);
        _members.GetOrAdd(channel, static _ => new(StringComparer.Ordinal))[member.Client] = new Member(member, node);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask RemoveAsync(string channel, string client, CancellationToken cancellationToken = default)
    {
        if (_members.TryGetValue(channel, out var members) && members.TryRemove(client, out _) && members.IsEmpty)
        {
            // A member added between the check and the removal would be lost, so remove only the exact empty set.
            _members.TryRemove(new KeyValuePair<string, ConcurrentDictionary<string, Member>>(channel, members));
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask RefreshNodeAsync(string node, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        _nodes[node] = Now + ttl.Ticks;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<bool> TouchLeaseAsync(string channel, string client, string user, JsonElement? info, TimeSpan ttl, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(TouchLease(channel, client, user, info, ttl));

    /// <inheritdoc/>
    public ValueTask EndLeaseAsync(string channel, string client, string user, CancellationToken cancellationToken = default)
    {
        EndLease(channel, client, user);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        _sweeper?.Dispose();
        return ValueTask.CompletedTask;
    }

    private List<ClientInfo> List(string channel)
    {
        var now = Now;
        var members = new List<ClientInfo>();
        _members.TryGetValue(channel, out var joined);
        if (joined is not null)
        {
            foreach (var (_, member) in joined)
            {
                if (_nodes.TryGetValue(member.Node, out var alive) && alive >= now)
                {
                    members.Add(member.Info);
                }
            }
        }
        if (!_leases.TryGetValue(channel, out var leases))
        {
            return members;
        }
        var expired = false;
        foreach (var (client, lease) in leases.Leases)
        {
            if (lease.IsExpired(now))
            {
                expired = true;
                continue;
            }
            // One entry per client id; a WebSocket subscriber's server-assigned id wins over a poll lease that claims it.
            if (joined is null || !joined.ContainsKey(client))
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

    private bool TouchLease(string channel, string client, string user, JsonElement? info, TimeSpan ttl)
    {
        var expires = Now + ttl.Ticks;
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
                if (leases.Count >= _maxLeasesPerChannel)
                {
                    SweepLocked(channel, leases, now);
                    if (leases.Count >= _maxLeasesPerChannel)
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
    private void EndLease(string channel, string client, string user)
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
    internal void SweepAll()
    {
        var now = Now;
        foreach (var (channel, leases) in _leases)
        {
            Sweep(channel, leases, now);
        }
    }

    private long Now => _time.GetUtcNow().UtcTicks;

    private void StartSweeper()
    {
        if (Interlocked.Exchange(ref _sweeperStarted, 1) == 0)
        {
            // Created with the first lease, so a node whose clients never poll with an id has no timer.
            _sweeper = _time.CreateTimer(static state => ((MemoryPresenceStore)state!).SweepAll(), this, _sweepPeriod, _sweepPeriod);
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

    private sealed record Member(ClientInfo Info, string Node);

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
