using System.Text;
using Herald.Brokers;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Core.Tests;

/// <summary>
/// A channel's subscriber list grows in place (spare capacity, doubling) and copies on removal; whatever the order of
/// subscribes and unsubscribes, a publication reaches exactly the subscribers of the moment, once each.
/// </summary>
public sealed class SubscriberListTests
{
    private const string Channel = "chat:list";

    private sealed class Transport : ISessionTransport
    {
        public string Name => "test";

        public void Close(int code, string reason)
        {
        }
    }

    [Fact]
    public async Task SubscribersAddedAndRemovedInAnyOrder_EachPublicationReachesExactlyTheCurrentOnes()
    {
        var options = new HeraldOptions { AllowAnonymous = true, MaxCommandsPerSecond = 1_000_000 };
        var ns = new NamespaceOptions { HistorySize = 10 };
        options.Namespaces["chat"] = ns;
        await using var node = new HeraldNode(options, new MemoryBroker());
        await node.StartAsync();
        var policy = Herald.Channels.ChannelService.PolicyOf(ns);

        var sessions = new List<ClientSession>();
        var subscribed = new HashSet<ClientSession>();
        var random = new Random(14);
        for (var round = 0; round < 12; round++)
        {
            // Grow past a few capacities, then shrink below a quarter, with removals from anywhere in the list.
            var adds = round < 6 ? 1 + round * 7 : 2;
            for (var i = 0; i < adds; i++)
            {
                var session = new ClientSession(node, new Transport());
                await session.HandleMessageAsync(Encoding.UTF8.GetBytes(
                    $$"""{"id":1,"op":"connect"}{{"\n"}}{"id":2,"op":"subscribe","channel":"{{Channel}}"}"""));
                sessions.Add(session);
                subscribed.Add(session);
            }
            var removals = round < 6 ? round : subscribed.Count * 2 / 3;
            foreach (var session in subscribed.OrderBy(_ => random.Next()).Take(removals).ToList())
            {
                await session.HandleMessageAsync(Encoding.UTF8.GetBytes($$"""{"id":3,"op":"unsubscribe","channel":"{{Channel}}"}"""));
                subscribed.Remove(session);
            }
            foreach (var session in sessions)
            {
                Drain(session);
            }

            await node.Broker.PublishAsync(Channel, """{"n":1}"""u8.ToArray(), null, policy);
            // The channel's fan-out worker delivers after the publish returns: wait for it (one pass reaches every subscriber).
            await WaitUntilAsync(() => subscribed.All(s => s.Outbound.Reader.Count > 0) && node.DispatchBacklog == 0);

            foreach (var session in sessions)
            {
                var pushes = Drain(session).Count(m => m.Contains("\"push\"", StringComparison.Ordinal));
                Assert.Equal(subscribed.Contains(session) ? 1 : 0, pushes);
            }
        }
        foreach (var session in subscribed.ToList())
        {
            await session.TerminateAsync();
        }
        // No subscriber is left, so the node holds no channel entry to fan out to: nothing may arrive.
        await node.Broker.PublishAsync(Channel, """{"n":2}"""u8.ToArray(), null, policy);
        await WaitUntilAsync(() => node.DispatchBacklog == 0);
        Assert.All(sessions, s => Assert.Empty(Drain(s)));
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the fan-out did not deliver within 5 s");
            await Task.Delay(10);
        }
    }

    private static List<string> Drain(ClientSession session)
    {
        var messages = new List<string>();
        while (session.Outbound.Reader.TryRead(out var message))
        {
            messages.Add(Encoding.UTF8.GetString(message.Bytes.Span));
            session.Outbound.Written(message.Bytes.Length);
        }
        return messages;
    }
}
