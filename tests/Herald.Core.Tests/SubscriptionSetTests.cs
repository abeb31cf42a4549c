using Herald.Brokers;
using Herald.Sessions;

namespace Herald.Core.Tests;

public sealed class SubscriptionSetTests
{
    private sealed class Transport : ISessionTransport
    {
        public string Name => "test";

        public void Close(int code, string reason)
        {
        }
    }

    private static Subscription[] Subscriptions(params string[] channels)
    {
        var node = new HeraldNode(new HeraldOptions { AllowAnonymous = true }, new MemoryBroker());
        var session = new ClientSession(node, new Transport());
        return [.. channels.Select(c => new Subscription(session, c, new NamespaceOptions()))];
    }

    [Fact]
    public void OneSubscription_IsFoundByItsChannelOnly_AndRemoved()
    {
        var a = Subscriptions("chat:a")[0];
        var set = new SubscriptionSet();
        Assert.False(set.ContainsKey("chat:a"));
        set.Add(a);
        Assert.Equal(1, set.Count);
        Assert.True(set.TryGetValue("chat:a", out var found));
        Assert.Same(a, found);
        Assert.False(set.ContainsKey("chat:b"));
        Assert.False(set.Remove("chat:b", out _));
        Assert.True(set.Remove("chat:a", out var removed));
        Assert.Same(a, removed);
        Assert.Equal(0, set.Count);
        Assert.False(set.ContainsKey("chat:a"));
    }

    [Fact]
    public void ASecondSubscription_KeepsTheFirst_AndEveryOneIsFoundRemovedAndTaken()
    {
        var subscriptions = Subscriptions("chat:a", "chat:b", "chat:c");
        var set = new SubscriptionSet();
        foreach (var subscription in subscriptions)
        {
            set.Add(subscription);
        }
        Assert.Equal(3, set.Count);
        foreach (var subscription in subscriptions)
        {
            Assert.True(set.TryGetValue(subscription.Channel, out var found));
            Assert.Same(subscription, found);
        }
        Assert.True(set.Remove("chat:b", out var removed));
        Assert.Same(subscriptions[1], removed);
        Assert.False(set.ContainsKey("chat:b"));
        Assert.Equal([subscriptions[0], subscriptions[2]], set.TakeAll().OrderBy(s => s.Channel));
        Assert.Equal(0, set.Count);
        Assert.Empty(set.TakeAll());
    }
}
