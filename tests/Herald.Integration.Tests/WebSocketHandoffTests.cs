using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Herald.Handlers;
using Herald.Integration.Tests.Infrastructure;
using Herald.Sessions;
using Herald.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Integration.Tests;

/// <summary>
/// A WebSocket handed off below Kestrel's HTTP layer once its handshake is answered (<see cref="HeraldOptions.WebSocketHandoff"/>):
/// its request ends while the WebSocket runs on; handlers still see the handshake's headers and client address; every
/// other connection, and a WebSocket asked for later on a keep-alive connection, keeps Kestrel's path. End to end, the
/// whole integration suite runs a second time with the option on (test.sh, <c>HERALD_TEST_INLINE_SCHEDULING=1</c>).
/// </summary>
public sealed class WebSocketHandoffTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>A server whose pipeline tells when a request to <c>/ws</c> has ended.</summary>
    private static async Task<(TestServer Server, TaskCompletionSource WsRequestEnded)> StartAsync(
        bool handoff, Action<HeraldOptions>? configure = null, Action<IServiceCollection>? services = null)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await TestServer.StartAsync(
            o =>
            {
                o.WebSocketHandoff = handoff;
                configure?.Invoke(o);
            },
            configureApp: app => app.Use(async (context, next) =>
            {
                await next(context);
                if (context.Request.Path == "/ws")
                {
                    ended.TrySetResult();
                }
            }),
            configureServices: services);
        return (server, ended);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TheHandshakeRequestEnds_OnlyWhenHandedOff_AndTheWebSocketRunsOnEitherWay(bool handoff)
    {
        var (server, requestEnded) = await StartAsync(handoff);
        await using var _ = server;
        await using var client = await WsClient.OpenAsync(server.WebSocketUri);
        await client.CommandAsync("""{"op":"connect"}""");
        if (handoff)
        {
            // The request ended while the WebSocket is open: nothing of it is kept for the connection's life.
            await requestEnded.Task.WaitAsync(Timeout);
        }
        await client.CommandAsync("""{"op":"subscribe","channel":"chat:a"}""");
        var offset = await server.PublishAsync("chat:a", """{"n":1}""");
        var push = await client.NextPushAsync();
        Assert.Equal(offset, push.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
        // Inside its request, the request lasts as long as the WebSocket.
        Assert.Equal(handoff, requestEnded.Task.IsCompleted);
    }

    [Fact]
    public async Task Handlers_SeeTheHandshakesHeadersAndForwardedClientAddress_AfterItsRequestEnded()
    {
        var seen = new TaskCompletionSource<ConnectContext>(TaskCreationOptions.RunContinuationsAsynchronously);
        var (server, requestEnded) = await StartAsync(
            handoff: true,
            o => o.TrustedProxies.Add("127.0.0.0/8"),
            services => services.AddHeraldHandler(new ConnectSpy(seen)));
        await using var _ = server;
        await using var client = await WsClient.OpenAsync(server.WebSocketUri, headers: new Dictionary<string, string>
        {
            ["X-Forwarded-For"] = "203.0.113.7",
            ["X-App-Session"] = "s-42",
        });
        await requestEnded.Task.WaitAsync(Timeout); // handed off before the client said anything
        await client.CommandAsync("""{"op":"connect"}""");
        var context = await seen.Task.WaitAsync(Timeout);
        Assert.Equal("203.0.113.7", context.RemoteAddress);
        Assert.Equal("s-42", context.Headers["x-app-session"]);
        Assert.True(context.Headers.ContainsKey("Sec-WebSocket-Key"));
        Assert.Equal(WebSocketTransport, context.Transport);
    }

    private const string WebSocketTransport = HeraldTransportNames.WebSocket;

    private sealed class ConnectSpy(TaskCompletionSource<ConnectContext> seen) : HeraldHandler
    {
        public override ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken)
        {
            // The headers are read now, after the handshake's request has ended: a copy, not the request's own.
            seen.TrySetResult(context with { Headers = context.Headers.ToDictionary(StringComparer.OrdinalIgnoreCase) });
            return base.OnConnectAsync(context, cancellationToken);
        }
    }

    [Fact]
    public async Task AWebSocketAskedForLaterOnAKeepAliveConnection_StaysInItsRequest_AndWorks()
    {
        var (server, requestEnded) = await StartAsync(handoff: true);
        await using var _ = server;
        using var raw = await RawConnection.OpenAsync(server.Port);
        await raw.SendAsync("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", await raw.ReadResponseAsync(), StringComparison.Ordinal);

        await raw.SendAsync(UpgradeRequest);
        var answer = await raw.ReadHeadAsync();
        Assert.True(answer.StartsWith("HTTP/1.1 101", StringComparison.Ordinal), answer);
        await raw.SendTextFrameAsync("""{"op":"connect","id":1}""");
        using (var reply = JsonDocument.Parse(await raw.ReadTextFrameAsync()))
        {
            Assert.Equal(1, reply.RootElement.GetProperty("id").GetInt32());
            Assert.True(reply.RootElement.TryGetProperty("result", out var _));
        }
        Assert.False(requestEnded.Task.IsCompleted);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ARefusedHandshake_GetsItsError_AndTheConnectionServesTheNextRequest(bool handoff)
    {
        var (server, _) = await StartAsync(handoff);
        await using var __ = server;
        using var raw = await RawConnection.OpenAsync(server.Port);
        await raw.SendAsync(UpgradeRequest.Replace("dGhlIHNhbXBsZSBub25jZQ==", "too-short", StringComparison.Ordinal));
        var refusal = await raw.ReadResponseAsync();
        Assert.StartsWith("HTTP/1.1 400", refusal, StringComparison.Ordinal);
        Assert.Contains("\"bad_request\"", refusal, StringComparison.Ordinal);
        await raw.SendAsync("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", await raw.ReadResponseAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AHandshakeSentAByteAtATime_IsStillHandedOff()
    {
        var (server, requestEnded) = await StartAsync(handoff: true);
        await using var _ = server;
        using var raw = await RawConnection.OpenAsync(server.Port);
        foreach (var b in Encoding.ASCII.GetBytes(UpgradeRequest))
        {
            await raw.SendBytesAsync([b]);
        }
        Assert.StartsWith("HTTP/1.1 101", await raw.ReadHeadAsync(), StringComparison.Ordinal);
        await requestEnded.Task.WaitAsync(Timeout);
        await raw.SendTextFrameAsync("""{"op":"connect","id":7}""");
        using var reply = JsonDocument.Parse(await raw.ReadTextFrameAsync());
        Assert.Equal(7, reply.RootElement.GetProperty("id").GetInt32());
    }

    [Theory]
    [InlineData("")]
    [InlineData("GET /w")]
    public async Task AConnectionThatSendsTooLittle_IsClosedAtKestrelsKeepAliveTimeout(string sent)
    {
        var (server, _) = await StartAsync(handoff: true,
            services: services => services.Configure<KestrelServerOptions>(k => k.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(1)));
        await using var __ = server;
        using var raw = await RawConnection.OpenAsync(server.Port);
        await raw.SendAsync(sent);
        Assert.True(await raw.WaitClosedAsync(), "the server should have closed a connection that never sent a request");
    }

    [Theory]
    [InlineData(null, "after its handshake True")]
    [InlineData("false", "after its handshake False")]
    public async Task TheStandaloneServer_HandsOffByDefault_AndConfigurationTurnsItOff(string? value, string expected)
    {
        var environment = new Dictionary<string, string> { ["Herald__AllowAnonymous"] = "true", ["Herald__ApiKey"] = "handoff-test-key-0123456789" };
        if (value is not null)
        {
            environment["Herald__WebSocketHandoff"] = value;
        }
        await using var server = await HeraldProcess.StartAsync(environment, TimeSpan.FromSeconds(30));
        Assert.False(server.HasExited, server.Output);
        Assert.Contains(expected, server.Output, StringComparison.Ordinal);

        await using var client = await WsClient.OpenAsync(server.WebSocketUri);
        Assert.True((await client.CommandAsync("""{"op":"connect"}""")).TryGetProperty("result", out _));
        Assert.True((await client.CommandAsync("""{"op":"subscribe","channel":"handoff"}""")).TryGetProperty("result", out _));
        using var publish = new HttpRequestMessage(HttpMethod.Post, "/api/publish")
        {
            Content = new StringContent("""{"channel":"handoff","data":{"n":1}}""", Encoding.UTF8, "application/json"),
        };
        publish.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "handoff-test-key-0123456789");
        using var response = await server.Http.SendAsync(publish);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        var push = await client.NextPushAsync(Timeout);
        Assert.Equal(1, push.GetProperty("push").GetProperty("pub").GetProperty("data").GetProperty("n").GetInt32());
    }

    private const string UpgradeRequest =
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.json\r\n\r\n";

    /// <summary>A client on a bare TCP connection: HTTP/1.1 and WebSocket frames written and read by hand.</summary>
    private sealed class RawConnection : IDisposable
    {
        private readonly Socket _socket;
        private readonly MemoryStream _pending = new();

        private RawConnection(Socket socket) => _socket = socket;

        public static async Task<RawConnection> OpenAsync(int port)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            using var cts = new CancellationTokenSource(Timeout);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
            return new RawConnection(socket);
        }

        public Task SendAsync(string text) => SendBytesAsync(Encoding.ASCII.GetBytes(text));

        public async Task SendBytesAsync(byte[] bytes)
        {
            using var cts = new CancellationTokenSource(Timeout);
            var sent = 0;
            while (sent < bytes.Length)
            {
                sent += await _socket.SendAsync(bytes.AsMemory(sent), SocketFlags.None, cts.Token);
            }
        }

        /// <summary>A masked text frame, as a client sends it.</summary>
        public Task SendTextFrameAsync(string text)
        {
            var payload = Encoding.UTF8.GetBytes(text);
            Assert.True(payload.Length < 126);
            byte[] mask = [1, 2, 3, 4];
            var frame = new byte[6 + payload.Length];
            frame[0] = 0x81;
            frame[1] = (byte)(0x80 | payload.Length);
            mask.CopyTo(frame, 2);
            for (var i = 0; i < payload.Length; i++)
            {
                frame[6 + i] = (byte)(payload[i] ^ mask[i % 4]);
            }
            return SendBytesAsync(frame);
        }

        /// <summary>Reads one unmasked text frame of the server's (under 64 KiB).</summary>
        public async Task<string> ReadTextFrameAsync()
        {
            var head = await ReadExactlyAsync(2);
            Assert.Equal(0x81, head[0]);
            var length = head[1] & 0x7F;
            if (length == 126)
            {
                var extended = await ReadExactlyAsync(2);
                length = (extended[0] << 8) | extended[1];
            }
            return Encoding.UTF8.GetString(await ReadExactlyAsync(length));
        }

        /// <summary>Reads a response's head, up to and including its blank line.</summary>
        public async Task<string> ReadHeadAsync()
        {
            while (true)
            {
                var text = Encoding.ASCII.GetString(_pending.GetBuffer(), 0, (int)_pending.Length);
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    Consume(end + 4);
                    return text[..(end + 4)];
                }
                Assert.True(await FillAsync(), "the connection closed before a response came");
            }
        }

        /// <summary>Reads a whole response, its body sized by <c>Content-Length</c> or sent in chunks: its head and its body.</summary>
        public async Task<string> ReadResponseAsync()
        {
            var head = await ReadHeadAsync();
            var lines = head.Split("\r\n");
            var length = lines.FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            if (length is not null)
            {
                return head + Encoding.UTF8.GetString(await ReadExactlyAsync(Number(length["Content-Length:".Length..], 10)));
            }
            Assert.Contains(lines, l => l.Equals("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase));
            var body = new StringBuilder();
            while (true)
            {
                var size = Number(await ReadLineAsync(), 16);
                var chunk = await ReadExactlyAsync(size + 2); // and its CRLF
                if (size == 0)
                {
                    return head + body;
                }
                body.Append(Encoding.UTF8.GetString(chunk, 0, size));
            }
        }

        private static int Number(string text, int radix) => Convert.ToInt32(text.Trim(), radix);

        private async Task<string> ReadLineAsync()
        {
            while (true)
            {
                var end = _pending.GetBuffer().AsSpan(0, (int)_pending.Length).IndexOf("\r\n"u8);
                if (end >= 0)
                {
                    var line = Encoding.ASCII.GetString(_pending.GetBuffer(), 0, end);
                    Consume(end + 2);
                    return line;
                }
                Assert.True(await FillAsync(), "the connection closed early");
            }
        }

        /// <summary>Whether the server closes the connection (end of stream or reset) before the timeout.</summary>
        public async Task<bool> WaitClosedAsync()
        {
            try
            {
                while (await FillAsync())
                {
                }
                return true;
            }
            catch (SocketException)
            {
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        private async Task<byte[]> ReadExactlyAsync(int count)
        {
            while (_pending.Length < count)
            {
                Assert.True(await FillAsync(), "the connection closed early");
            }
            var bytes = _pending.GetBuffer().AsSpan(0, count).ToArray();
            Consume(count);
            return bytes;
        }

        private async Task<bool> FillAsync()
        {
            using var cts = new CancellationTokenSource(Timeout);
            var buffer = new byte[4096];
            var read = await _socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            _pending.Write(buffer, 0, read);
            return read > 0;
        }

        private void Consume(int count)
        {
            var rest = _pending.GetBuffer().AsSpan(count, (int)_pending.Length - count).ToArray();
            _pending.SetLength(0);
            _pending.Write(rest);
        }

        public void Dispose() => _socket.Dispose();
    }
}
