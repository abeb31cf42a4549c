using System.Text.Json;
using Herald.Presence;
using Herald.Protocol;

namespace Herald.Tests.Infrastructure;

/// <summary>Synchronous views of a node's in-memory presence for assertions (the memory store answers synchronously).</summary>
public static class NodeTestExtensions
{
    private static MemoryPresenceStore Store(HeraldNode node) => (MemoryPresenceStore)node.Presence;

    /// <summary>The clients listed in a channel's presence.</summary>
    public static IReadOnlyCollection<ClientInfo> GetPresence(this HeraldNode node, string channel) =>
        node.Presence.ListAsync(channel).AsTask().GetAwaiter().GetResult();

    /// <summary>Refreshes a polling client's lease as a poll with <paramref name="wait"/> does.</summary>
    public static bool TouchPollPresence(this HeraldNode node, string channel, string client, string user, JsonElement? info, TimeSpan wait)
    {
        var touched = node.Presence.TouchLeaseAsync(channel, client, user, info, wait + node.Options.PollPresenceTimeout);
        return touched.IsCompletedSuccessfully ? touched.Result : touched.AsTask().GetAwaiter().GetResult();
    }

    /// <summary>
    /// Publishes compact JSON straight into the node's broker, past every check: for tests that need a burst. It first
    /// waits for room in the channel's fan-out backlog (Herald:MaxDispatchBacklog), as a publish through a node with
    /// Herald:PublishBackpressure does, so that a burst faster than any publisher over HTTP is paced by the fan-out
    /// instead of overflowing it (tests of the overflow publish through the node).
    /// </summary>
    public static async ValueTask<StreamPosition> PublishAsync(this HeraldNode node, string channel, NamespaceOptions ns, ReadOnlyMemory<byte> data, ClientInfo? info)
    {
        await node.WaitForFanOutBelowLimitAsync(channel, CancellationToken.None);
        return await node.Broker.PublishAsync(channel, data, info, Herald.Channels.ChannelService.PolicyOf(ns));
    }

    /// <summary>Removes expired leases now.</summary>
    public static void SweepPollPresence(this HeraldNode node) => Store(node).SweepAll();

    /// <summary>Poll leases held, expired ones not yet swept included.</summary>
    public static int PollPresenceLeases(this HeraldNode node) => Store(node).LeaseCount;
}
