using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Herald.Handlers;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Herald.Integration.Tests;

/// <summary>Application handlers on a real server: each hook on each transport it applies to, and handlers that fail.</summary>
public sealed class HandlerTests
{
    private const string Secret = "a-test-secret-that-is-long-enough-for-hs256";

    /// <summary>A handler whose hooks the test sets; every call is recorded as "hook/transport".</summary>
    private sealed class TestHandler : HeraldHandler
    {
        public Func<ConnectContext, ValueTask<HeraldResult<AuthenticationResult>>>? Connect { get; init; }
        public Func<SubscribeContext, ValueTask<HeraldResult<SubscribeAccepted>>>? Subscribe { get; init; }
        public Func<PublishContext, ValueTask<HeraldResult<PublishAccepted>>>? Publish { get; init; }
        public Func<RpcContext, CancellationToken, ValueTask<HeraldResult<RpcReply>>>? Rpc { get; init; }
        public Func<DisconnectContext, ValueTask>? Disconnect { get; init; }

        public ConcurrentQueue<string> Calls { get; } = new();
        public Channel<DisconnectContext> Disconnects { get; } = Channel.CreateUnbounded<DisconnectContext>();

        public override ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken)
        {
            Calls.Enqueue($"connect/{context.Transport}");
            return Connect?.Invoke(context) ?? base.OnConnectAsync(context, cancellationToken);
        }

        public override ValueTask<HeraldResult<SubscribeAccepted>> OnSubscribeAsync(SubscribeContext context, CancellationToken cancellationToken)
        {
            Calls.Enqueue($"subscribe/{context.Transport}/{context.Channel}");
            return Subscribe?.Invoke(context) ?? base.OnSubscribeAsync(context, cancellationToken);
        }

        public override ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken)
        {
            Calls.Enqueue($"publish/{context.Transport}/{context.Channel}");
            return Publish?.Invoke(context) ?? base.OnPublishAsync(context, cancellationToken);
        }

        public override ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken)
        {
            Calls.Enqueue($"rpc/{context.Transport}/{context.Method}");
            return Rpc?.Invoke(context, cancellationToken) ?? base.OnRpcAsync(context, cancellationToken);
        }

        public override async ValueTask OnDisconnectAsync(DisconnectContext context, CancellationToken cancellationToken)
        {
            Calls.Enqueue($"disconnect/{context.Transport}");
            Disconnects.Writer.TryWrite(context);
            if (Disconnect is not null)
            {
                await Disconnect(context);
            }
        }
    }

    private static Task<TestServer> StartAsync(Action<HeraldOptions>? configure = null, params IHeraldHandler[] handlers) =>
        TestServer.StartAsync(configure, configureServices: services =>
        {
            foreach (var handler in handlers)
            {
                services.AddHeraldHandler(handler);
            }
        });

    private static JsonElement Json(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }

    private static string? ErrorCode(JsonElement reply) =>
        reply.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString() : null;

    private static async Task<(HttpStatusCode Status, JsonElement Body)> PostCmdAsync(TestServer server, string body, string? token = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/cmd") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (token is not null)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        }
        using var response = await server.Http.SendAsync(request);
        return (response.StatusCode, Json(await response.Content.ReadAsStringAsync()));
    }

    private static string Token(string sub, DateTime expires) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
    {
        Claims = new Dictionary<string, object> { ["sub"] = sub },
        Expires = expires,
        NotBefore = DateTime.UtcNow.AddMinutes(-1),
        IssuedAt = DateTime.UtcNow.AddMinutes(-1),
        SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(Secret)), SecurityAlgorithms.HmacSha256),
    });

    private static void TokenProfile(HeraldOptions o)
    {
        o.AllowAnonymous = false;
        o.Token.Secret = Secret;
        o.Token.ClockSkew = TimeSpan.Zero;
        o.Namespaces["private"] = new NamespaceOptions { HistorySize = 10, RequireGrant = true };
    }

    [Fact]
    public async Task Connect_HandlerReplacesTheAuthenticatorsRefusal_WithItsUserGrantsAndExpiry_OverWebSocket()
    {
        var handler = new TestHandler
        {
            // A session cookie the application knows stands in for a token: the JWT authenticator refused (no token).
            Connect = c => ValueTask.FromResult<HeraldResult<AuthenticationResult>>(
                c is { Token: "session-42", Authentication.Succeeded: false } && c.Headers.ContainsKey("Sec-WebSocket-Key") && c.RemoteAddress is not null
                    ? new AuthenticationResult(true, "bob", null) { Grants = [new ChannelGrant("private:*", Subscribe: true, Publish: false)], ExpiresAt = DateTimeOffset.UtcNow.AddSeconds(1.5) }
                    : c.Authentication),
        };
        await using var server = await StartAsync(TokenProfile, handler);
        await using var client = await WsClient.OpenAsync(server.WebSocketUri);

        var connected = await client.CommandAsync("""{"op":"connect","token":"session-42"}""");
        Assert.Equal("bob", connected.GetProperty("result").GetProperty("user").GetString());
        Assert.Null(ErrorCode(await client.CommandAsync("""{"op":"subscribe","channel":"private:room"}"""))); // the handler's grant
        Assert.Equal((WebSocketCloseStatus)CloseCodes.TokenExpired, await client.WaitClosedAsync(TimeSpan.FromSeconds(10))); // the handler's expiry
    }

    [Fact]
    public async Task Connect_HandlerFollowsAValidJwt_AndARefusedTokenStaysRefused()
    {
        var seen = new ConcurrentQueue<AuthenticationResult>();
        var handler = new TestHandler { Connect = c => { seen.Enqueue(c.Authentication); return ValueTask.FromResult<HeraldResult<AuthenticationResult>>(c.Authentication); } };
        await using var server = await StartAsync(TokenProfile, handler);

        await using var alice = await server.ConnectAsync(Token("alice", DateTime.UtcNow.AddMinutes(5)));
        Assert.Contains(seen, a => a is { Succeeded: true, User: "alice", ExpiresAt: not null });

        await using var mallory = await WsClient.OpenAsync(server.WebSocketUri);
        Assert.Equal(ErrorCodes.Unauthorized, ErrorCode(await mallory.CommandAsync("""{"op":"connect","token":"garbage"}""")));
        Assert.Equal((WebSocketCloseStatus)CloseCodes.Unauthorized, await mallory.WaitClosedAsync());
    }

    [Fact]
    public async Task Connect_HandlerRefusal_ReachesTheClientWithItsCodeAndMessage_OnEveryTransport()
    {
        var handler = new TestHandler
        {
            Connect = c => ValueTask.FromResult<HeraldResult<AuthenticationResult>>(new HeraldError(ErrorCodes.PermissionDenied, $"banned from {c.Transport}")),
        };
        await using var server = await StartAsync(null, handler);

        await using var ws = await WsClient.OpenAsync(server.WebSocketUri);
        var reply = await ws.CommandAsync("""{"op":"connect"}""");
        Assert.Equal(ErrorCodes.PermissionDenied, ErrorCode(reply));
        Assert.Equal("banned from websocket", reply.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal((WebSocketCloseStatus)CloseCodes.Unauthorized, await ws.WaitClosedAsync());

        var (status, body) = await PostCmdAsync(server, """{"id":1,"op":"ping"}""");
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Equal("banned from http", body.GetProperty("error").GetProperty("message").GetString());

        using var poll = await server.Http.GetAsync("/poll?channel=chat:a");
        Assert.Equal(HttpStatusCode.Forbidden, poll.StatusCode);
        Assert.Contains("banned from poll", await poll.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_OverCmdAndPoll_TheHandlersUserIsTheOneThatPublishes()
    {
        var handler = new TestHandler
        {
            Connect = c => ValueTask.FromResult<HeraldResult<AuthenticationResult>>(new AuthenticationResult(true, "carol", null)),
        };
        await using var server = await StartAsync(null, handler);

        var (status, _) = await PostCmdAsync(server, """{"id":1,"op":"publish","channel":"chat:who","data":{"n":1}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var (_, history) = await PostCmdAsync(server, """{"id":2,"op":"history","channel":"chat:who"}""");
        Assert.Equal("carol", history.GetProperty("result").GetProperty("publications")[0].GetProperty("info").GetProperty("user").GetString());

        using var poll = await server.Http.GetAsync("/poll?channel=chat:who&client=poller1");
        Assert.Equal(HttpStatusCode.OK, poll.StatusCode);
        Assert.Contains("connect/poll", handler.Calls);
        Assert.Contains("connect/http", handler.Calls);
    }

    [Fact]
    public async Task Subscribe_HandlerAttachesDataToTheReply_AndRefusesWithItsCode_OverWebSocketAndPoll()
    {
        var handler = new TestHandler
        {
            Subscribe = c => ValueTask.FromResult<HeraldResult<SubscribeAccepted>>(c.Channel == "chat:secret"
                ? new HeraldError("members_only", $"{c.Client.User} is not a member")
                : new SubscribeAccepted(Json("""{"welcome":"hi"}"""))),
        };
        await using var server = await StartAsync(null, handler);
        await using var client = await server.ConnectAsync();

        var allowed = await client.CommandAsync("""{"op":"subscribe","channel":"chat:open"}""");
        Assert.Equal("hi", allowed.GetProperty("result").GetProperty("data").GetProperty("welcome").GetString());
        var refused = await client.CommandAsync("""{"op":"subscribe","channel":"chat:secret"}""");
        Assert.Equal("members_only", ErrorCode(refused));
        Assert.Equal(" is not a member", refused.GetProperty("error").GetProperty("message").GetString());
        // The refused channel holds no place: a later subscribe is asked again, and the open one is live.
        Assert.Equal("members_only", ErrorCode(await client.CommandAsync("""{"op":"subscribe","channel":"chat:secret"}""")));
        await server.PublishAsync("chat:open", """{"n":1}""");
        Assert.Equal(1UL, (await client.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());

        using var pollRefused = await server.Http.PostAsync("/poll", new StringContent("""{"channels":{"chat:open":null,"chat:secret":null}}"""));
        Assert.Equal(HttpStatusCode.BadRequest, pollRefused.StatusCode);
        var error = Json(await pollRefused.Content.ReadAsStringAsync()).GetProperty("error");
        Assert.Equal("members_only", error.GetProperty("code").GetString());
        Assert.Equal("chat:secret:  is not a member", error.GetProperty("message").GetString());
        using var pollAllowed = await server.Http.GetAsync("/poll?channel=chat:open");
        Assert.Equal(HttpStatusCode.OK, pollAllowed.StatusCode);
        Assert.Contains("subscribe/poll/chat:open", handler.Calls);
    }

    [Fact]
    public async Task Publish_HandlerSeesBytesOnlyForBinaryPublications_AndMayReplaceThemWithJson()
    {
        var seen = new ConcurrentQueue<string>();
        var handler = new TestHandler
        {
            Publish = c =>
            {
                // A regression: a JSON publication once reached handlers with an empty (not absent) Bytes.
                seen.Enqueue(c.Bytes is { } b ? $"bytes:{Convert.ToHexString(b.Span)}" : $"json:{c.Data.GetRawText()}");
                return ValueTask.FromResult<HeraldResult<PublishAccepted>>(c.Bytes is { Length: 1 }
                    ? new PublishAccepted(Json("""{"replaced":true}"""))
                    : PublishAccepted.Unchanged);
            },
        };
        await using var server = await StartAsync(null, handler);
        await using var subscriber = await server.ConnectAsync();
        await subscriber.CommandAsync("""{"op":"subscribe","channel":"chat:hb"}""");
        await using var publisher = await server.ConnectAsync();

        Assert.Null(ErrorCode(await publisher.CommandAsync("""{"op":"publish","channel":"chat:hb","data":{"n":1}}""")));
        Assert.Null(ErrorCode(await publisher.CommandAsync("""{"op":"publish","channel":"chat:hb","b64":"AAH/"}""")));
        Assert.Null(ErrorCode(await publisher.CommandAsync("""{"op":"publish","channel":"chat:hb","b64":"Kg=="}""")));

        Assert.Equal(["json:{\"n\":1}", "bytes:0001FF", "bytes:2A"], seen);
        Assert.Equal("""{"n":1}""", (await subscriber.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("data").GetRawText());
        Assert.Equal("AAH/", (await subscriber.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("b64").GetString());
        Assert.Equal("""{"replaced":true}""", (await subscriber.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("data").GetRawText());
    }

    [Fact]
    public async Task Publish_HandlerReplacesTheData_OrRefuses_OverWebSocketAndCmd_ButNotTheServerApi()
    {
        var handler = new TestHandler
        {
            Publish = c =>
            {
                var text = c.Data.GetProperty("text").GetString()!;
                return ValueTask.FromResult<HeraldResult<PublishAccepted>>(text.Length == 0
                    ? new HeraldError(ErrorCodes.BadRequest, "say something")
                    : new PublishAccepted(Json($$"""{"text":"{{text.ToUpperInvariant()}}","by":"{{c.Transport}}"}""")));
            },
        };
        await using var server = await StartAsync(null, handler);
        await using var subscriber = await server.ConnectAsync();
        await subscriber.CommandAsync("""{"op":"subscribe","channel":"chat:loud"}""");
        await using var publisher = await server.ConnectAsync();

        Assert.Null(ErrorCode(await publisher.CommandAsync("""{"op":"publish","channel":"chat:loud","data":{"text":"hi"}}""")));
        var refused = await publisher.CommandAsync("""{"op":"publish","channel":"chat:loud","data":{"text":""}}""");
        Assert.Equal(ErrorCodes.BadRequest, ErrorCode(refused));
        Assert.Equal("say something", refused.GetProperty("error").GetProperty("message").GetString());
        var (status, _) = await PostCmdAsync(server, """{"id":1,"op":"publish","channel":"chat:loud","data":{"text":"yo"}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        await server.PublishAsync("chat:loud", """{"text":"api"}""");

        var data = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            data.Add((await subscriber.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("data").GetRawText());
        }
        Assert.Equal(["""{"text":"HI","by":"websocket"}""", """{"text":"YO","by":"http"}""", """{"text":"api"}"""], data);
        Assert.Equal(3, handler.Calls.Count(c => c.StartsWith("publish/", StringComparison.Ordinal)));
        // Herald's own rules come first: a namespace closed to clients never reaches the handler.
        Assert.Equal(ErrorCodes.PermissionDenied, ErrorCode(await publisher.CommandAsync("""{"op":"publish","channel":"locked:x","data":{"text":"x"}}""")));
        Assert.DoesNotContain("publish/websocket/locked:x", handler.Calls);
    }

    [Fact]
    public async Task Rpc_IsAnsweredByTheFirstHandlerThatKnowsTheMethod_OverWebSocketAndCmd()
    {
        var other = new TestHandler(); // answers nothing: not_available, so the next is asked
        var echo = new TestHandler
        {
            Rpc = (c, _) => ValueTask.FromResult<HeraldResult<RpcReply>>(c.Method switch
            {
                "echo" => new RpcReply(Json($$"""{"got":{{(c.Data is { } d ? d.GetRawText() : "null")}},"user":"{{c.Client.User}}","via":"{{c.Transport}}"}""")),
                "nothing" => new RpcReply(),
                _ => new HeraldError(ErrorCodes.NotAvailable, $"no method {c.Method}"),
            }),
        };
        await using var server = await StartAsync(null, other, echo);
        await using var client = await server.ConnectAsync();

        var reply = await client.CommandAsync("""{"op":"rpc","method":"echo","data":{"x":3}}""");
        Assert.Equal("""{"got":{"x":3},"user":"","via":"websocket"}""", reply.GetProperty("result").GetProperty("data").GetRawText());
        Assert.Equal(JsonValueKind.Null, (await client.CommandAsync("""{"op":"rpc","method":"nothing"}""")).GetProperty("result").GetProperty("data").ValueKind);
        var unknown = await client.CommandAsync("""{"op":"rpc","method":"nope"}""");
        Assert.Equal(ErrorCodes.NotAvailable, ErrorCode(unknown));

        var (status, body) = await PostCmdAsync(server, """{"id":5,"op":"rpc","method":"echo","data":[1,2]}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(5, body.GetProperty("id").GetInt32());
        Assert.Equal("""{"got":[1,2],"user":"","via":"http"}""", body.GetProperty("result").GetProperty("data").GetRawText());
        var (notFound, _) = await PostCmdAsync(server, """{"id":6,"op":"rpc","method":"nope"}""");
        Assert.Equal(HttpStatusCode.NotFound, notFound);
    }

    [Theory]
    [InlineData("""{"op":"rpc"}""")]
    [InlineData("""{"op":"rpc","method":""}""")]
    [InlineData("""{"op":"rpc","method":"has space"}""")]
    [InlineData("""{"op":"rpc","method":"caf\u00e9"}""")]
    [InlineData("""{"op":"rpc","method":"a/b"}""")]
    [InlineData("""{"op":"rpc","method":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}""")] // 65
    public async Task Rpc_BadMethodName_IsBadRequest_AndNeverReachesTheHandler(string command)
    {
        var handler = new TestHandler { Rpc = (_, _) => ValueTask.FromResult<HeraldResult<RpcReply>>(new RpcReply()) };
        await using var server = await StartAsync(null, handler);
        await using var client = await server.ConnectAsync();
        var reply = await client.CommandAsync(command);
        Assert.Equal(ErrorCodes.BadRequest, ErrorCode(reply));
        Assert.Contains("'method'", reply.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain(handler.Calls, c => c.StartsWith("rpc/", StringComparison.Ordinal));
        // Every allowed character, at the longest length, is accepted.
        var longest = new string('x', 60) + "_-.:";
        Assert.Null(ErrorCode(await client.CommandAsync($$"""{"op":"rpc","method":"{{longest}}"}""")));
    }

    [Fact]
    public async Task RpcInFlight_WhenTheConnectionIsClosedAndTheCloseDeadlinePasses_IsCancelled()
    {
        // The read loop waits for the handler, so the client's close answer goes unread and the close deadline aborts
        // the connection: that abort must reach the command being handled (its token source lives per message).
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handler = new TestHandler
        {
            Rpc = async (_, cancellationToken) =>
            {
                entered.TrySetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    cancelled.TrySetResult();
                    throw;
                }
                return new RpcReply();
            },
        };
        await using var server = await TestServer.StartAsync(o =>
        {
            o.CloseTimeout = TimeSpan.FromMilliseconds(300);
            o.HandlerTimeout = TimeSpan.FromMinutes(5); // so that only the abort can end the call in time
        }, configureServices: services =>
        {
            Herald.Tests.Infrastructure.UserAuthenticator.Use(services);
            services.AddHeraldHandler(handler);
        });
        await using var client = await server.ConnectAsync(Herald.Tests.Infrastructure.UserAuthenticator.TokenFor("alice"));
        await client.SendRawAsync("""{"id":7,"op":"rpc","method":"slow"}""");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(10));

        using var response = await server.Api.PostAsync("/api/disconnect", new StringContent("""{"user":"alice"}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Rpc_WithoutAnyHandler_IsNotAvailable()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync();
        Assert.Equal(ErrorCodes.NotAvailable, ErrorCode(await client.CommandAsync("""{"op":"rpc","method":"move","data":{"x":3}}""")));
        var (status, body) = await PostCmdAsync(server, """{"op":"rpc","method":"move"}""");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal(ErrorCodes.NotAvailable, ErrorCode(body));
    }

    [Fact]
    public async Task FailingHandlers_GiveInternalOrTheirOwnCode_AndTheConnectionAndOtherClientsGoOn()
    {
        var handler = new TestHandler
        {
            Rpc = async (c, cancellationToken) =>
            {
                switch (c.Method)
                {
                    case "throw":
                        throw new InvalidOperationException("secret detail");
                    case "coded":
                        throw new HeraldHandlerException("quota_exceeded", "3 calls a day");
                    case "hang":
                        // Ignores its token on purpose: the timeout must not depend on the handler's cooperation.
                        await new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously).Task;
                        return new RpcReply();
                    default:
                        return new RpcReply(Json("\"ok\""));
                }
            },
        };
        await using var server = await StartAsync(o => o.HandlerTimeout = TimeSpan.FromMilliseconds(300), handler);
        await using var client = await server.ConnectAsync();
        await using var other = await server.ConnectAsync();

        var thrown = await client.CommandAsync("""{"op":"rpc","method":"throw"}""");
        Assert.Equal(ErrorCodes.Internal, ErrorCode(thrown));
        Assert.DoesNotContain("secret detail", thrown.GetRawText(), StringComparison.Ordinal);
        var coded = await client.CommandAsync("""{"op":"rpc","method":"coded"}""");
        Assert.Equal("quota_exceeded", ErrorCode(coded));
        Assert.Equal("3 calls a day", coded.GetProperty("error").GetProperty("message").GetString());

        var hanging = client.CommandAsync("""{"op":"rpc","method":"hang"}""");
        // While one client's call hangs, another's is answered at once.
        Assert.Null(ErrorCode(await other.CommandAsync("""{"op":"rpc","method":"fine"}""")));
        var timedOut = await Wait.ForAsync(hanging, TimeSpan.FromSeconds(5), "the hanging call's timeout");
        Assert.Equal(ErrorCodes.Internal, ErrorCode(timedOut));
        Assert.Null(ErrorCode(await client.CommandAsync("""{"op":"rpc","method":"fine"}"""))); // the connection still works

        var (status, body) = await PostCmdAsync(server, """{"op":"rpc","method":"coded"}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("quota_exceeded", ErrorCode(body));
    }

    [Fact]
    public async Task ConnectHandlerThatFails_GivesInternal_AndCloses1011_SoTheClientRetries()
    {
        var handler = new TestHandler { Connect = _ => throw new InvalidOperationException("database down") };
        await using var server = await StartAsync(null, handler);
        await using var client = await WsClient.OpenAsync(server.WebSocketUri);
        Assert.Equal(ErrorCodes.Internal, ErrorCode(await client.CommandAsync("""{"op":"connect"}""")));
        Assert.Equal(WebSocketCloseStatus.InternalServerError, await client.WaitClosedAsync());
        var (status, _) = await PostCmdAsync(server, """{"op":"ping"}""");
        Assert.Equal(HttpStatusCode.InternalServerError, status);
    }

    [Fact]
    public async Task Disconnect_IsToldTheCloseCode_OfAPeerClose_AServerClose_AndADrop_WithoutBlockingTeardown()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // The disconnect handler never finishes while the test runs: teardown must not wait for it.
        var handler = new TestHandler { Disconnect = _ => new ValueTask(release.Task) };
        await using var server = await StartAsync(o =>
        {
            o.Token.Secret = Secret;
            o.Token.ClockSkew = TimeSpan.Zero;
        }, handler);
        try
        {
            var peer = await server.ConnectAsync();
            await peer.Socket.CloseAsync((WebSocketCloseStatus)4100, "done here", CancellationToken.None);
            var told = await handler.Disconnects.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal((4100, "done here", HeraldTransportNames.WebSocket), (told.Code, told.Reason, told.Transport));

            // exp is in whole seconds, so now + 1 s could be a few milliseconds away and expire before the connect is
            // checked on a busy machine (it did, once in CI); 3 s leaves at least 2 s for the connect.
            var expiring = await server.ConnectAsync(Token("dave", DateTime.UtcNow.AddSeconds(3)));
            told = await handler.Disconnects.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal((CloseCodes.TokenExpired, "dave"), (told.Code, told.Client.User));

            var dropped = await server.ConnectAsync();
            dropped.Socket.Abort();
            told = await handler.Disconnects.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(1006, told.Code);

            // A connection that never connected is not reported; the next one that did is, and nothing came in between.
            var silent = await WsClient.OpenAsync(server.WebSocketUri);
            await silent.Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
            var last = await server.ConnectAsync();
            await last.Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "last", CancellationToken.None);
            told = await handler.Disconnects.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("last", told.Reason);
            await last.DisposeAsync();
            await peer.DisposeAsync();
            await expiring.DisposeAsync();
            await dropped.DisposeAsync();
            await silent.DisposeAsync();
        }
        finally
        {
            release.SetResult();
        }
    }

    [Fact]
    public async Task Rpc_CountsAgainstTheCommandRateLimit()
    {
        var handler = new TestHandler { Rpc = (_, _) => ValueTask.FromResult<HeraldResult<RpcReply>>(new RpcReply()) };
        await using var server = await StartAsync(o => o.MaxCommandsPerSecond = 10, handler);
        await using var client = await WsClient.OpenAsync(server.WebSocketUri);
        await client.SendRawAsync(string.Join('\n', Enumerable.Range(1, 30).Select(i => i == 1 ? """{"id":1,"op":"connect"}""" : $$"""{"id":{{i}},"op":"rpc","method":"m"}""")));
        var limited = 0;
        for (var i = 0; i < 30; i++)
        {
            if (ErrorCode(await client.NextReplyAsync()) == ErrorCodes.RateLimited)
            {
                limited++;
            }
        }
        Assert.InRange(limited, 10, 20); // 10 per second; at most one refill during the burst
        Assert.InRange(handler.Calls.Count(c => c.StartsWith("rpc/", StringComparison.Ordinal)), 9, 19);
    }

    [Fact]
    public void HandlerTimeout_DefaultsTo5s_AndOutOfRangeIsRefusedByName()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), new HeraldOptions().HandlerTimeout);
        Assert.Contains(new HeraldOptions { HandlerTimeout = TimeSpan.Zero }.Validate(), p => p.Contains("Herald:HandlerTimeout", StringComparison.Ordinal));
        Assert.Contains(new HeraldOptions { HandlerTimeout = TimeSpan.FromMinutes(6) }.Validate(), p => p.Contains("Herald:HandlerTimeout", StringComparison.Ordinal));
        Assert.Empty(new HeraldOptions { HandlerTimeout = TimeSpan.FromMilliseconds(10) }.Validate());
    }
}
