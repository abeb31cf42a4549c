using System.Net;
using System.Net.Http.Headers;
using Herald.Brokers;
using Herald.Presence;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Herald.Tests.Infrastructure;

/// <summary>A real Herald on real Kestrel, bound to a free loopback port (or a given one, to restart a server in place).</summary>
/// <remarks>Shared by the integration and client test projects (linked, not copied).</remarks>
public sealed class TestServer : IAsyncDisposable
{
    public const string ApiKey = "test-api-key";

    private readonly WebApplication _app;

    private TestServer(WebApplication app, Uri baseUri)
    {
        _app = app;
        BaseUri = baseUri;
        Http = new HttpClient { BaseAddress = baseUri };
        Api = new HttpClient { BaseAddress = baseUri };
        Api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
    }

    /// <summary>
    /// Whether the servers run the standalone server's transport defaults, Kestrel's sockets transport inline and
    /// WebSocket frames sent on the socket (<see cref="HeraldOptions.WebSocketDirectSend"/>): <c>HERALD_TEST_INLINE_SCHEDULING=1</c>.
    /// </summary>
    public static bool InlineScheduling { get; } = Environment.GetEnvironmentVariable("HERALD_TEST_INLINE_SCHEDULING") == "1";

    public Uri BaseUri { get; }

    public Uri WebSocketUri => new($"ws://{BaseUri.Authority}/ws");

    public int Port => BaseUri.Port;

    /// <summary>An HTTP client without credentials.</summary>
    public HttpClient Http { get; }

    /// <summary>An HTTP client sending the API key.</summary>
    public HttpClient Api { get; }

    public HeraldNode Node => _app.Services.GetRequiredService<HeraldNode>();

    /// <summary>The application's services, as its own code would have them injected.</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>Starts a server with the test profile (anonymous access; namespaces chat, news, nohist, locked), then <paramref name="configure"/>.</summary>
    /// <param name="configure">Changes to the Herald options.</param>
    /// <param name="port">The port to bind, 0 for a free one.</param>
    /// <param name="configureApp">Adds middleware that runs before Herald's endpoints.</param>
    /// <param name="shared">Logs and presence shared with other servers: this server is then one node of several.</param>
    /// <param name="configureServices">Registers services before Herald's defaults are resolved (e.g. another <see cref="IBroker"/>).</param>
    public static async Task<TestServer> StartAsync(Action<HeraldOptions>? configure = null, int port = 0, Action<WebApplication>? configureApp = null, SharedStores? shared = null, Action<IServiceCollection>? configureServices = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel().UseUrls($"http://127.0.0.1:{port}");
        if (InlineScheduling)
        {
            // The standalone server's default (Kestrel:Sockets:UnsafePreferInlineScheduling); test.sh runs the suites
            // that use this server once more with it on.
            builder.WebHost.UseSockets(sockets => sockets.UnsafePreferInlineScheduling = true);
        }
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddHerald(o =>
        {
            o.ApiKey = ApiKey;
            // Tests drive the server hard from one IP; the rate-limit tests lower these again.
            o.MaxCommandsPerSecond = 1_000_000;
            o.MaxPublishesPerSecond = 1_000_000;
            o.MaxHttpRequestsPerSecondPerIp = 1_000_000;
            o.MaxConnectionsPerIp = 100_000;
            o.AllowAnonymous = true;
            o.WebSocketDirectSend = InlineScheduling;
            o.WebSocketHandoff = InlineScheduling;
            o.Namespaces["chat"] = new NamespaceOptions { HistorySize = 100_000, HistoryTtl = TimeSpan.FromMinutes(10), AllowClientPublish = true, Presence = true };
            o.Namespaces["small"] = new NamespaceOptions { HistorySize = 5, HistoryTtl = TimeSpan.FromMinutes(10), AllowClientPublish = true };
            o.Namespaces["nohist"] = new NamespaceOptions { HistorySize = 0, AllowClientPublish = true };
            o.Namespaces["locked"] = new NamespaceOptions { HistorySize = 10, AllowClientPublish = false };
            configure?.Invoke(o);
        });
        if (shared is not null)
        {
            builder.Services.AddSingleton<IBroker>(_ => new MemoryBroker(shared.Logs));
            builder.Services.AddSingleton<IPresenceStore>(shared.Presence); // an instance: the container does not dispose it
        }
        configureServices?.Invoke(builder.Services);
        var app = builder.Build();
        configureApp?.Invoke(app);
        app.MapHerald();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new TestServer(app, new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal) + "/"));
    }

    /// <summary>
    /// Starts <paramref name="count"/> servers, each on its own loopback port, sharing one in-memory log store and one
    /// presence store: <paramref name="count"/> nodes of one Herald, as several processes on one Redis would be.
    /// </summary>
    public static async Task<TestCluster> StartClusterAsync(int count, Action<HeraldOptions>? configure = null, Action<IServiceCollection>? configureServices = null)
    {
        var options = new HeraldOptions();
        configure?.Invoke(options);
        var shared = new SharedStores(options);
        var nodes = new List<TestServer>();
        for (var i = 0; i < count; i++)
        {
            nodes.Add(await StartAsync(configure, shared: shared, configureServices: configureServices));
        }
        return new TestCluster(nodes, shared);
    }

    /// <summary>Publishes through the server API and returns the offset.</summary>
    public async Task<ulong> PublishAsync(string channel, string dataJson)
    {
        using var response = await Api.PostAsync("/api/publish", new StringContent($$"""{"channel":"{{channel}}","data":{{dataJson}}}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("offset").GetUInt64();
    }

    /// <summary>Publishes bytes through the server API (<c>application/octet-stream</c>) and returns the offset.</summary>
    public async Task<ulong> PublishBytesAsync(string channel, byte[] payload)
    {
        using var content = new ByteArrayContent(payload);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        using var response = await Api.PostAsync($"/api/publish?channel={Uri.EscapeDataString(channel)}", content);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("offset").GetUInt64();
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        Api.Dispose();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }
}

/// <summary>The stores several test nodes share, standing in for one Redis.</summary>
public sealed class SharedStores(HeraldOptions options) : IAsyncDisposable
{
    public MemoryLogStore Logs { get; } = new();

    /// <summary>The presence store, with the cluster's presence settings (lease limit, sweep period).</summary>
    public MemoryPresenceStore Presence { get; } = new(options);

    public async ValueTask DisposeAsync()
    {
        Logs.Dispose();
        await Presence.DisposeAsync();
    }
}

/// <summary>Several Herald nodes on shared stores, each a real Kestrel on its own loopback port.</summary>
public sealed class TestCluster(IReadOnlyList<TestServer> nodes, SharedStores shared) : IAsyncDisposable
{
    public IReadOnlyList<TestServer> Nodes { get; } = nodes;

    public TestServer this[int index] => Nodes[index];

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }
        await shared.DisposeAsync();
    }
}
