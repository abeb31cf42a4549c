using System.Text.Json;
using Herald.Brokers;
using Herald.Protocol;
using StackExchange.Redis;
using ClientInfo = Herald.Protocol.ClientInfo;

namespace Herald.Redis.Tests;

/// <summary>The Redis presence store against the collection's redis-server: expiry by node heartbeat and by lease TTL, one entry per client id.</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisPresenceStoreTests(RedisServerFixture redis) : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private readonly string _prefix = "presence-" + Guid.NewGuid().ToString("N")[..12];
    private ConnectionMultiplexer _connection = null!;

    public async Task InitializeAsync() => _connection = await redis.ConnectAsync();

    public async Task DisposeAsync() => await _connection.DisposeAsync();

    private RedisPresenceStore NewStore(int maxLeases = 10_000) =>
        new(_connection, new RedisBrokerOptions { Prefix = _prefix }, new HeraldOptions { MaxPollPresencePerChannel = maxLeases });

    private static async Task<string[]> ClientsAsync(RedisPresenceStore store, string channel) =>
        [.. (await store.ListAsync(channel)).Select(c => c.Client).Order(StringComparer.Ordinal)];

    /// <summary>Lists until the clients are <paramref name="expected"/>, failing after <see cref="Deadline"/>.</summary>
    private static async Task WaitForClientsAsync(RedisPresenceStore store, string channel, string[] expected, string what)
    {
        var deadline = DateTime.UtcNow + Deadline;
        string[] listed;
        while (!(listed = await ClientsAsync(store, channel)).SequenceEqual(expected))
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {Deadline.TotalSeconds} s waiting for {what}: listed [{string.Join(", ", listed)}], expected [{string.Join(", ", expected)}]");
            }
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Members_OfANodeThatStopsRefreshing_DisappearAfterItsTtl_OthersStay()
    {
        await using var store = NewStore();
        await store.RefreshNodeAsync("dying", TimeSpan.FromSeconds(2));
        await store.RefreshNodeAsync("alive", TimeSpan.FromMinutes(1));
        await store.AddAsync("chat:room", new ClientInfo("ann", "ann-1"), "dying");
        await store.AddAsync("chat:room", new ClientInfo("bob", "bob-1"), "alive");
        Assert.Equal(["ann-1", "bob-1"], await ClientsAsync(store, "chat:room"));

        await WaitForClientsAsync(store, "chat:room", ["bob-1"], "the dying node's member to drop out");

        await store.RemoveAsync("chat:room", "bob-1");
        Assert.Empty(await ClientsAsync(store, "chat:room"));
    }

    [Fact]
    public async Task Members_OfACrashedNode_AreDeletedFromRedis_WhenPresenceIsListed()
    {
        var keys = new RedisKeys(_prefix);
        await using var store = NewStore();
        await store.RefreshNodeAsync("crashed", TimeSpan.FromSeconds(1));
        await store.RefreshNodeAsync("alive", TimeSpan.FromMinutes(1));
        await store.AddAsync("chat:room", new ClientInfo("ann", "ann-1"), "crashed");
        await store.AddAsync("chat:room", new ClientInfo("cat", "cat-1"), "crashed");
        await store.AddAsync("chat:room", new ClientInfo("bob", "bob-1"), "alive");

        // The crashed node never refreshes again: once its heartbeat has expired, a listing deletes its members.
        await WaitForClientsAsync(store, "chat:room", ["bob-1"], "the crashed node's members to drop out");
        var left = (await _connection.GetDatabase().HashKeysAsync(keys.Members("chat:room"))).Select(k => (string)k!).Order(StringComparer.Ordinal);
        Assert.Equal(["bob-1"], left);
        Assert.Equal(2, store.DeletedCount);
    }

    [Fact]
    public async Task Members_OfANodeWhoseHeartbeatLapsed_AreWrittenAgainAtItsNextRefresh()
    {
        // Node x was cut off from Redis for longer than its TTL: another node's listing deleted its member. x is alive,
        // though, and its member still connected: when x refreshes again it finds its heartbeat gone and writes it back.
        await using var nodeX = NewStore();
        await using var other = NewStore();
        await nodeX.RefreshNodeAsync("x", TimeSpan.FromSeconds(1));
        await nodeX.AddAsync("chat:room", new ClientInfo("ann", "ann-1"), "x");
        await WaitForClientsAsync(other, "chat:room", [], "x's member to be deleted as a dead node's");
        Assert.Equal(1, other.DeletedCount);

        await nodeX.RefreshNodeAsync("x", TimeSpan.FromMinutes(1));
        Assert.Equal(["ann-1"], await ClientsAsync(other, "chat:room"));
        // A member that left is not written back.
        await nodeX.RemoveAsync("chat:room", "ann-1");
        await nodeX.RefreshNodeAsync("x", TimeSpan.FromMinutes(1));
        Assert.Empty(await ClientsAsync(other, "chat:room"));
    }

    [Fact]
    public async Task Leases_ExpireUnlessTouched_AndAreThenFreeForAnotherUser()
    {
        await using var store = NewStore();
        using var info = JsonDocument.Parse("""{"name":"Pat"}""");
        Assert.True(await store.TouchLeaseAsync("chat:room", "pat-1", "pat", info.RootElement, TimeSpan.FromSeconds(2)));
        Assert.True(await store.TouchLeaseAsync("chat:room", "kim-1", "kim", null, TimeSpan.FromMinutes(1)));
        var pat = Assert.Single(await store.ListAsync("chat:room"), c => c.Client == "pat-1");
        Assert.Equal("pat", pat.User);
        Assert.Equal("Pat", pat.Info!.Value.GetProperty("name").GetString());
        // Another user's live lease is not taken over.
        Assert.False(await store.TouchLeaseAsync("chat:room", "pat-1", "mallory", null, TimeSpan.FromMinutes(1)));

        await WaitForClientsAsync(store, "chat:room", ["kim-1"], "pat's lease to expire");

        Assert.True(await store.TouchLeaseAsync("chat:room", "pat-1", "mallory", null, TimeSpan.FromMinutes(1)));
        await store.EndLeaseAsync("chat:room", "kim-1", "someone-else");
        Assert.Equal(["kim-1", "pat-1"], await ClientsAsync(store, "chat:room"));
        await store.EndLeaseAsync("chat:room", "kim-1", "kim");
        Assert.Equal(["pat-1"], await ClientsAsync(store, "chat:room"));
    }

    [Fact]
    public async Task List_HasOneEntryPerClientId_AMemberWinsOverALeaseWithItsId()
    {
        await using var store = NewStore();
        await store.RefreshNodeAsync("node-a", TimeSpan.FromMinutes(1));
        await store.AddAsync("chat:room", new ClientInfo("ann", "shared-id"), "node-a");
        await store.AddAsync("chat:room", new ClientInfo("ann", "shared-id"), "node-a");
        for (var i = 0; i < 3; i++)
        {
            Assert.True(await store.TouchLeaseAsync("chat:room", "shared-id", "ann", null, TimeSpan.FromMinutes(1)));
            Assert.True(await store.TouchLeaseAsync("chat:room", "poller", "zed", null, TimeSpan.FromMinutes(1)));
        }

        var listed = await store.ListAsync("chat:room");
        Assert.Equal(["poller", "shared-id"], listed.Select(c => c.Client).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task TouchLease_PastTheChannelsLimit_IsRefused_ButExistingLeasesStillRefresh()
    {
        await using var store = NewStore(maxLeases: 2);
        Assert.True(await store.TouchLeaseAsync("chat:full", "p1", "u", null, TimeSpan.FromMinutes(1)));
        Assert.True(await store.TouchLeaseAsync("chat:full", "p2", "u", null, TimeSpan.FromMinutes(1)));
        Assert.False(await store.TouchLeaseAsync("chat:full", "p3", "u", null, TimeSpan.FromMinutes(1)));
        Assert.True(await store.TouchLeaseAsync("chat:full", "p1", "u", null, TimeSpan.FromMinutes(1)));
        Assert.Equal(["p1", "p2"], await ClientsAsync(store, "chat:full"));
    }

    [Fact]
    public async Task Calls_WhenRedisCannotBeReached_ThrowBrokerUnavailable()
    {
        // A port nothing listens on: the connection never comes up, and calls fail within the configured timeouts.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        await using var down = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{port},abortConnect=false,connectTimeout=500,asyncTimeout=1000,syncTimeout=1000");
        await using var store = new RedisPresenceStore(down, new RedisBrokerOptions { Prefix = _prefix }, new HeraldOptions());
        await using var broker = new RedisBroker(down, new RedisBrokerOptions { Prefix = _prefix });
        await broker.StartAsync(new NoHandler());

        await Assert.ThrowsAsync<BrokerUnavailableException>(async () => await store.ListAsync("chat:room"));
        await Assert.ThrowsAsync<BrokerUnavailableException>(async () => await broker.PublishAsync("chat:room", "1"u8.ToArray(), null, new HistoryPolicy(10, TimeSpan.Zero)));
        await Assert.ThrowsAsync<BrokerUnavailableException>(async () => await broker.ReadHistoryAsync("chat:room", 0, 10, new HistoryPolicy(10, TimeSpan.Zero)));
    }

    private sealed class NoHandler : IBrokerEventHandler
    {
        public void HandlePublication(string channel, Publication publication, string epoch)
        {
        }
    }
}
