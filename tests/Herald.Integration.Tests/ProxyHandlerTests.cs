using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Herald.AspNetCore.Proxy;
using Herald.Handlers;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Herald.Integration.Tests;

/// <summary>
/// The hook proxy against a real backend process (Node, tests/proxy-backend/backend.mjs), called as Herald calls a
/// handler: each hook allowed, refused with the backend's code and message, data replaced; connect answers with a
/// user, grants, info and expiry; headers forwarded; and a backend that is down, slow or answers garbage.
/// </summary>
public sealed class ProxyHandlerTests(ProxyBackend backend) : IClassFixture<ProxyBackend>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static readonly ClientInfo Alice = new("alice", "c-alice") { Info = JsonDocument.Parse("""{"name":"Alice"}""").RootElement };

    private static readonly AuthenticationResult AliceToken = new(true, "alice", null)
    {
        Grants = [new ChannelGrant("chat:*", Subscribe: true, Publish: false)],
        ExpiresAt = DateTimeOffset.FromUnixTimeSeconds(2_000_000_000),
    };

    private static JsonElement Json(string json) => JsonDocument.Parse(json).RootElement;

    /// <summary>The proxy as the application's container builds it: from configuration keys, through AddHeraldProxy().</summary>
    private static (IHeraldHandler Handler, LogSink Logs, ServiceProvider Provider) Build(Dictionary<string, string?> settings)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        var logs = new LogSink();
        services.AddLogging(b => b.AddProvider(logs));
        services.AddHeraldProxy();
        var provider = services.BuildServiceProvider();
        return (Assert.Single(provider.GetServices<IHeraldHandler>()), logs, provider);
    }

    private (IHeraldHandler Handler, LogSink Logs, ServiceProvider Provider) AllHooks(string timeout = "00:00:05") => Build(new()
    {
        ["Herald:Proxy:Connect:Url"] = backend.Url("/connect"),
        ["Herald:Proxy:Subscribe:Url"] = backend.Url("/subscribe"),
        ["Herald:Proxy:Publish:Url"] = backend.Url("/publish"),
        ["Herald:Proxy:Rpc:Url"] = backend.Url("/rpc"),
        ["Herald:Proxy:Timeout"] = timeout,
        ["Herald:Proxy:ForwardHeaders:0"] = "Cookie",
        ["Herald:Proxy:ForwardHeaders:1"] = "User-Agent",
    });

    private static ConnectContext Connect(string? token, AuthenticationResult? auth = null, Dictionary<string, string>? headers = null) =>
        new("c-1", HeraldTransportNames.WebSocket, token, auth ?? AuthenticationResult.Anonymous,
            headers ?? new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase), "127.0.0.1");

    private static HeraldError ErrorOf<T>(HeraldResult<T> result) => Assert.IsType<HeraldError>(result.Error);

    // ---- connect

    [Fact]
    public async Task Connect_BackendAnswersEmptyResult_TheTokensOutcomeStands()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        var accepted = await proxy.OnConnectAsync(Connect("a.jwt", AliceToken), default);
        Assert.Same(AliceToken, accepted.Value);

        var refusal = AuthenticationResult.Refuse("the token has expired");
        var refused = await proxy.OnConnectAsync(Connect("old.jwt", refusal), default);
        Assert.Same(refusal, refused.Value);
    }

    [Fact]
    public async Task Connect_BackendRefuses_TheClientGetsTheBackendsCodeAndMessage()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        var error = ErrorOf(await proxy.OnConnectAsync(Connect("refuse", AliceToken), default));

        Assert.Equal(new HeraldError("unauthorized", "your session has ended"), error);
    }

    [Fact]
    public async Task Connect_ResultWithUser_ReplacesUserGrantsInfoAndExpiry()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        // The token refused (none is configured), yet the backend vouches for bob.
        var auth = (await proxy.OnConnectAsync(Connect("as-bob", AuthenticationResult.Refuse("token validation is not configured")), default)).Value;

        Assert.True(auth.Succeeded);
        Assert.Equal("bob", auth.User);
        Assert.True(auth.CanSubscribe("chat:lobby") && auth.CanPublish("chat:lobby"));
        Assert.True(auth.CanSubscribe("news") && !auth.CanPublish("news"));
        Assert.False(auth.CanSubscribe("other"));
        Assert.Equal("Bob", auth.Info!.Value.GetProperty("name").GetString());
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(4_102_444_800), auth.ExpiresAt);
    }

    [Fact]
    public async Task Connect_SendsTheContractsFields_AndForwardsOnlyTheListedHeaders_CookiesIncluded()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["Cookie"] = "session=s3cr3t; theme=dark",
            ["User-Agent"] = "HeraldTest/1.0",
            ["X-Not-Listed"] = "must not travel",
        };

        var auth = (await proxy.OnConnectAsync(Connect("echo", AuthenticationResult.Refuse("no key"), headers), default)).Value;

        var seen = auth.Info!.Value;
        Assert.Equal("POST", seen.GetProperty("method").GetString());
        Assert.StartsWith("application/json", seen.GetProperty("content_type").GetString(), StringComparison.Ordinal);
        var sentHeaders = seen.GetProperty("headers");
        Assert.Equal("session=s3cr3t; theme=dark", sentHeaders.GetProperty("cookie").GetString());
        Assert.Equal("HeraldTest/1.0", sentHeaders.GetProperty("user-agent").GetString());
        Assert.False(sentHeaders.TryGetProperty("x-not-listed", out var _));
        var body = seen.GetProperty("body");
        Assert.Equal("c-1", body.GetProperty("client").GetString());
        Assert.Equal("websocket", body.GetProperty("transport").GetString());
        Assert.Equal("", body.GetProperty("user").GetString());
        Assert.False(body.GetProperty("authenticated").GetBoolean());
        Assert.Equal("no key", body.GetProperty("auth_error").GetString());
        Assert.Equal("echo", body.GetProperty("token").GetString());
        Assert.Equal("127.0.0.1", body.GetProperty("remote_addr").GetString());
    }

    // ---- subscribe

    [Fact]
    public async Task Subscribe_Allowed_Refused_OrWithData_AsTheBackendSays()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        var allowed = await proxy.OnSubscribeAsync(new SubscribeContext(Alice, HeraldTransportNames.Poll, "chat:lobby", AliceToken), default);
        Assert.Null(allowed.Value.Data);

        var refused = ErrorOf(await proxy.OnSubscribeAsync(new SubscribeContext(Alice, HeraldTransportNames.Poll, "chat:members", AliceToken), default));
        Assert.Equal(new HeraldError("permission_denied", "members only, alice"), refused);

        var welcome = await proxy.OnSubscribeAsync(new SubscribeContext(Alice, HeraldTransportNames.WebSocket, "chat:welcome", AliceToken), default);
        Assert.Equal("""{"welcome":"alice"}""", welcome.Value.Data!.Value.GetRawText());

        var echo = (await proxy.OnSubscribeAsync(new SubscribeContext(Alice, HeraldTransportNames.Command, "chat:echo", AliceToken), default)).Value.Data!.Value;
        var body = echo.GetProperty("body");
        Assert.Equal("c-alice", body.GetProperty("client").GetString());
        Assert.Equal("alice", body.GetProperty("user").GetString());
        Assert.Equal("http", body.GetProperty("transport").GetString());
        Assert.Equal("chat:echo", body.GetProperty("channel").GetString());
        Assert.Equal("Alice", body.GetProperty("info").GetProperty("name").GetString());
        Assert.False(echo.GetProperty("headers").TryGetProperty("cookie", out var _));
    }

    // ---- publish

    [Fact]
    public async Task Publish_Allowed_Refused_OrReplaced_AsTheBackendSays()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        var unchanged = await proxy.OnPublishAsync(new PublishContext(Alice, HeraldTransportNames.WebSocket, "chat:lobby", Json("""{"text":"hi"}"""), AliceToken), default);
        Assert.Null(unchanged.Value.Data);

        var refused = ErrorOf(await proxy.OnPublishAsync(new PublishContext(Alice, HeraldTransportNames.WebSocket, "chat:lobby", Json("""{"text":""}"""), AliceToken), default));
        Assert.Equal(new HeraldError("empty_message", "say something"), refused);

        var replaced = await proxy.OnPublishAsync(new PublishContext(Alice, HeraldTransportNames.Command, "chat:upper", Json("""{"text":"hi","n":1}"""), AliceToken), default);
        Assert.Equal("""{"text":"HI","n":1}""", replaced.Value.Data!.Value.GetRawText());

        var echo = (await proxy.OnPublishAsync(new PublishContext(Alice, HeraldTransportNames.Command, "chat:echo", Json("""{"text":"hi"}"""), AliceToken), default)).Value.Data!.Value;
        var body = echo.GetProperty("body");
        Assert.Equal("chat:echo", body.GetProperty("channel").GetString());
        Assert.Equal("""{"text":"hi"}""", body.GetProperty("data").GetRawText());
        Assert.Equal("alice", body.GetProperty("user").GetString());
        Assert.Equal("c-alice", body.GetProperty("client").GetString());
        Assert.Equal("http", body.GetProperty("transport").GetString());
    }

    [Fact]
    public async Task Publish_OfBytes_SendsB64InPlaceOfData()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        var context = new PublishContext(Alice, HeraldTransportNames.WebSocket, "chat:echo", default, AliceToken) { Bytes = new byte[] { 0, 1, 254, 255 } };
        var body = (await proxy.OnPublishAsync(context, default)).Value.Data!.Value.GetProperty("body");
        Assert.Equal("AAH+/w==", body.GetProperty("b64").GetString());
        Assert.False(body.TryGetProperty("data", out var _));
    }

    // ---- rpc

    [Fact]
    public async Task Rpc_AnsweredWithData_OrTheBackendsError_OrNothing()
    {
        var (proxy, _, provider) = AllHooks();
        await using var _ = provider;

        var echo = (await proxy.OnRpcAsync(new RpcContext(Alice, HeraldTransportNames.WebSocket, "echo", Json("""{"x":3}"""), AliceToken), default)).Value.Data!.Value;
        var body = echo.GetProperty("body");
        Assert.Equal("echo", body.GetProperty("method").GetString());
        Assert.Equal("""{"x":3}""", body.GetProperty("data").GetRawText());
        Assert.Equal("alice", body.GetProperty("user").GetString());
        Assert.Equal("websocket", body.GetProperty("transport").GetString());

        Assert.Equal(new HeraldError("insufficient_funds", "you have 0 coins"),
            ErrorOf(await proxy.OnRpcAsync(new RpcContext(Alice, HeraldTransportNames.WebSocket, "pay", null, AliceToken), default)));
        Assert.Equal(ErrorCodes.NotAvailable,
            ErrorOf(await proxy.OnRpcAsync(new RpcContext(Alice, HeraldTransportNames.WebSocket, "unknown", null, AliceToken), default)).Code);
        Assert.Null((await proxy.OnRpcAsync(new RpcContext(Alice, HeraldTransportNames.WebSocket, "nothing", null, AliceToken), default)).Value.Data);
    }

    // ---- hooks without a URL

    [Fact]
    public async Task HooksWithoutAUrl_BehaveAsTheDefaultHandler_AndCallNoBackend()
    {
        // Only RPC is proxied, and to a backend that is down: the other hooks must not call anything.
        var (proxy, logs, provider) = Build(new() { ["Herald:Proxy:Rpc:Url"] = ProxyBackend.DownUrl() });
        await using var _ = provider;

        Assert.Same(AliceToken, (await proxy.OnConnectAsync(Connect("x", AliceToken), default)).Value);
        Assert.Same(SubscribeAccepted.Allow, (await proxy.OnSubscribeAsync(new SubscribeContext(Alice, "websocket", "chat:a", AliceToken), default)).Value);
        Assert.Same(PublishAccepted.Unchanged, (await proxy.OnPublishAsync(new PublishContext(Alice, "websocket", "chat:a", Json("1"), AliceToken), default)).Value);
        Assert.Empty(logs.Events);

        var noRpc = Build(new() { ["Herald:Proxy:Connect:Url"] = backend.Url("/connect") });
        await using var __ = noRpc.Provider;
        Assert.Equal(ErrorCodes.NotAvailable, ErrorOf(await noRpc.Handler.OnRpcAsync(new RpcContext(Alice, "websocket", "m", null, AliceToken), default)).Code);
    }

    // ---- a backend that fails

    [Fact]
    public async Task BackendDown_Unavailable_AtOnce_AndLogged()
    {
        var (proxy, logs, provider) = Build(new() { ["Herald:Proxy:Connect:Url"] = ProxyBackend.DownUrl() });
        await using var _ = provider;

        var error = ErrorOf(await proxy.OnConnectAsync(Connect(null), default).AsTask().WaitAsync(Bound));

        Assert.Equal(new HeraldError(ErrorCodes.Unavailable, "the application backend cannot be reached"), error);
        Assert.Contains(500, logs.Events);
    }

    [Fact]
    public async Task BackendSlow_UnavailableWhenTheTimeoutPasses_NeverAHang()
    {
        var (proxy, logs, provider) = Build(new()
        {
            ["Herald:Proxy:Publish:Url"] = backend.Url("/slow"),
            ["Herald:Proxy:Timeout"] = "00:00:00.400",
        });
        await using var _ = provider;

        var clock = Stopwatch.StartNew();
        var error = ErrorOf(await proxy.OnPublishAsync(new PublishContext(Alice, "websocket", "chat:a", Json("{}"), AliceToken), default).AsTask().WaitAsync(Bound));
        clock.Stop();

        Assert.Equal(ErrorCodes.Unavailable, error.Code);
        Assert.Equal("the application backend did not answer within 0.4 s", error.Message);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(350), TimeSpan.FromSeconds(5));
        Assert.Contains(501, logs.Events);
    }

    [Fact]
    public async Task CallerGivesUp_TheCallIsCancelled_NotAnsweredUnavailable()
    {
        var (proxy, _, provider) = Build(new() { ["Herald:Proxy:Rpc:Url"] = backend.Url("/slow") });
        await using var _ = provider;
        using var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => proxy.OnRpcAsync(new RpcContext(Alice, "websocket", "m", null, AliceToken), caller.Token).AsTask().WaitAsync(Bound));
    }

    [Theory]
    [InlineData(502, ErrorCodes.Unavailable)]
    [InlineData(503, ErrorCodes.Unavailable)]
    [InlineData(504, ErrorCodes.Unavailable)]
    [InlineData(500, ErrorCodes.Internal)]
    [InlineData(404, ErrorCodes.Internal)]
    [InlineData(401, ErrorCodes.Internal)]
    [InlineData(302, ErrorCodes.Internal)]
    public async Task BackendAnswersNon2xx_TheDocumentedCode(int status, string code)
    {
        var (proxy, logs, provider) = Build(new() { ["Herald:Proxy:Subscribe:Url"] = backend.Url($"/status/{status}") });
        await using var _ = provider;

        var error = ErrorOf(await proxy.OnSubscribeAsync(new SubscribeContext(Alice, "poll", "chat:a", AliceToken), default).AsTask().WaitAsync(Bound));

        Assert.Equal(code, error.Code);
        Assert.Contains($"HTTP {status}", error.Message, StringComparison.Ordinal);
        Assert.Contains(502, logs.Events);
    }

    [Theory]
    [InlineData("not-json")]
    [InlineData("array")]
    [InlineData("empty-object")]
    [InlineData("result-not-object")]
    [InlineData("result-null")]
    [InlineData("both")]
    [InlineData("error-bad-code")]
    [InlineData("error-no-message")]
    [InlineData("error-long-message")]
    [InlineData("error-not-object")]
    [InlineData("truncated")]
    [InlineData("huge")]
    [InlineData("connect-bad-right")]
    [InlineData("connect-info-not-object")]
    [InlineData("connect-user-not-string")]
    [InlineData("connect-grants-without-user")]
    [InlineData("connect-expire-string")]
    public async Task BackendAnswersGarbage_Internal_AndLogged(string answer)
    {
        var (proxy, logs, provider) = Build(new() { ["Herald:Proxy:Connect:Url"] = backend.Url($"/canned/{answer}") });
        await using var _ = provider;

        var error = ErrorOf(await proxy.OnConnectAsync(Connect(null), default).AsTask().WaitAsync(Bound));

        Assert.Equal(new HeraldError(ErrorCodes.Internal, "the application backend's answer is invalid"), error);
        Assert.Contains(503, logs.Events);
    }

    [Fact]
    public async Task AnswerLargerThanMaxResponseBytes_Internal_ButAllowedUnderALargerLimit()
    {
        var huge = new PublishContext(Alice, "websocket", "chat:a", Json("{}"), AliceToken);
        var (small, _, p1) = Build(new() { ["Herald:Proxy:Publish:Url"] = backend.Url("/canned/huge") });
        await using var _ = p1;
        Assert.Equal(ErrorCodes.Internal, ErrorOf(await small.OnPublishAsync(huge, default)).Code);

        var (large, _, p2) = Build(new()
        {
            ["Herald:Proxy:Publish:Url"] = backend.Url("/canned/huge"),
            ["Herald:Proxy:MaxResponseBytes"] = (4 * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        await using var __ = p2;
        Assert.Equal(2 * 1024 * 1024, (await large.OnPublishAsync(huge, default)).Value.Data!.Value.GetString()!.Length);
    }

    /// <summary>Collects the event ids logged, to check each failure is logged.</summary>
    private sealed class LogSink : ILoggerProvider
    {
        public ConcurrentQueue<int> Events { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void Dispose()
        {
        }

        private sealed class Logger(LogSink sink) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (eventId.Id != 0)
                {
                    sink.Events.Enqueue(eventId.Id);
                }
            }
        }
    }
}
