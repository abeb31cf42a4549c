using System.Text.Json;
using Herald.Protocol;

namespace Herald.Presence;

/// <summary>
/// Who is present in which channel, across every node that shares the store. Two kinds of entry: a connection's
/// member (a WebSocket subscriber), which lives while its node keeps refreshing itself; and a polling client's lease,
/// which lives until its own TTL unless the client polls again.
/// </summary>
/// <remarks>
/// Entries of a node that stops calling <see cref="RefreshNodeAsync"/> (it crashed, or lost the store) stop being
/// listed once that node's TTL passes, without anyone removing them. The in-memory store
/// (<see cref="MemoryPresenceStore"/>) is the default; a shared store (Redis) serves several processes.
/// Implementations throw <c>BrokerUnavailableException</c> when their backend cannot be reached.
/// </remarks>
public interface IPresenceStore : IAsyncDisposable
{
    /// <summary>Lists <paramref name="member"/> in <paramref name="channel"/> for as long as <paramref name="node"/> stays alive.</summary>
    ValueTask AddAsync(string channel, ClientInfo member, string node, CancellationToken cancellationToken = default);

    /// <summary>Removes the member with id <paramref name="client"/> from <paramref name="channel"/>.</summary>
    ValueTask RemoveAsync(string channel, string client, CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates or extends the lease of a polling client: listed until <paramref name="ttl"/> from now, unless touched again.
    /// </summary>
    /// <returns>
    /// Whether the client is listed: <see langword="false"/> when the channel already holds as many leases as the store
    /// allows, or another user's live lease holds that client id (it is not taken over).
    /// </returns>
    ValueTask<bool> TouchLeaseAsync(string channel, string client, string user, JsonElement? info, TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Ends the lease of (<paramref name="channel"/>, <paramref name="client"/>) now, if <paramref name="user"/> holds it.</summary>
    ValueTask EndLeaseAsync(string channel, string client, string user, CancellationToken cancellationToken = default);

    /// <summary>The members and live leases of a channel, one entry per client id (a member wins over a lease with its id).</summary>
    ValueTask<IReadOnlyCollection<ClientInfo>> ListAsync(string channel, CancellationToken cancellationToken = default);

    /// <summary>Keeps the members added by <paramref name="node"/> listed for <paramref name="ttl"/> more: the node's heartbeat.</summary>
    ValueTask RefreshNodeAsync(string node, TimeSpan ttl, CancellationToken cancellationToken = default);
}
