using System.Net;
using System.Net.Sockets;
using Herald.AspNetCore.WebSockets;
using Herald.Integration.Tests.Infrastructure;
using Herald.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace Herald.Integration.Tests;

/// <summary>
/// Frames sent on the connection's socket itself (<see cref="HeraldOptions.WebSocketDirectSend"/>). The stream under
/// the WebSocket is given two real loopback connections here: "Kestrel's" stream (the one it reads from) and the socket
/// for direct sends, each to a client of its own, so which client a frame reaches shows which way it went. End to end,
/// the whole integration suite runs a second time with the option on (test.sh, <c>HERALD_TEST_INLINE_SCHEDULING=1</c>).
/// </summary>
public sealed class WebSocketDirectSendTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>A masked text frame of a client, whatever its content: enough for the stream to see the client's first bytes.</summary>
    private static readonly byte[] ClientFrame = [0x81, 0x82, 1, 2, 3, 4, (byte)('h' ^ 1), (byte)('i' ^ 2)];

    private static byte[] ServerFrame(byte fill, int length)
    {
        var header = length < 126 ? 2 : length <= ushort.MaxValue ? 4 : 10;
        var frame = new byte[header + length];
        frame[0] = 0x81;
        if (header == 2)
        {
            frame[1] = (byte)length;
        }
        else if (header == 4)
        {
            frame[1] = 126;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), (ushort)length);
        }
        else
        {
            frame[1] = 127;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(2), (ulong)length);
        }
        frame.AsSpan(header).Fill(fill);
        return frame;
    }

    /// <summary>A loopback connection: the server's socket and the client's.</summary>
    private sealed class Pair : IDisposable
    {
        private Pair(Socket server, Socket client)
        {
            Server = server;
            Client = client;
        }

        public Socket Server { get; }

        public Socket Client { get; }

        public static async Task<Pair> OpenAsync(int? serverSendBuffer = null)
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            if (serverSendBuffer is { } size)
            {
                client.ReceiveBufferSize = size;
            }
            var accepting = listener.AcceptAsync();
            await client.ConnectAsync(listener.LocalEndPoint!);
            var server = await accepting.WaitAsync(Timeout);
            if (serverSendBuffer is { } send)
            {
                server.SendBufferSize = send;
            }
            return new Pair(server, client);
        }

        /// <summary>Ends the server's side and returns everything the client received until then.</summary>
        public async Task<byte[]> CloseAndReadAllAsync()
        {
            Server.Shutdown(SocketShutdown.Send);
            return await ReadAsync(int.MaxValue);
        }

        /// <summary>Reads until <paramref name="count"/> bytes have come, or the end of the stream.</summary>
        public async Task<byte[]> ReadAsync(int count)
        {
            using var cts = new CancellationTokenSource(Timeout);
            var received = new MemoryStream();
            var buffer = new byte[64 * 1024];
            while (received.Length < count)
            {
                var read = await Client.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                if (read == 0)
                {
                    break;
                }
                received.Write(buffer, 0, read);
            }
            return received.ToArray();
        }

        public void Dispose()
        {
            Server.Dispose();
            Client.Dispose();
        }
    }

    private static FrameGuardStream Stream(Pair kestrel, Pair direct) =>
        new(new NetworkStream(kestrel.Server, ownsSocket: false), 64 * 1024, new DefaultHttpContext(), direct.Server);

    private static async Task WriteFrameAsync(FrameGuardStream stream, byte[] frame, CancellationToken cancellationToken = default)
    {
        Assert.True(stream.TryEnterWrite());
        try
        {
            await stream.WriteFrameAsync(frame, cancellationToken);
        }
        finally
        {
            stream.ExitWrite();
        }
    }

    private static async Task ReadClientFrameAsync(FrameGuardStream stream, Pair kestrel)
    {
        await kestrel.Client.SendAsync(ClientFrame);
        var buffer = new byte[ClientFrame.Length];
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read)).AsTask().WaitAsync(Timeout);
            Assert.NotEqual(0, n);
            read += n;
        }
        Assert.Equal(ClientFrame, buffer);
    }

    /// <summary>
    /// Writes 60-KB frames to a client that does not read until the socket's buffers are full and a send has to wait
    /// (it took part of a frame or nothing); returns the frames written and that send, which still holds the write lock.
    /// </summary>
    private static async Task<(List<byte[]> Frames, Task Pending)> WriteUntilASendWaitsAsync(FrameGuardStream stream, CancellationToken cancellationToken)
    {
        var frames = new List<byte[]>();
        for (var i = 0; i < 1000; i++)
        {
            var frame = ServerFrame((byte)('a' + (i % 26)), 60_000);
            frames.Add(frame);
            Assert.True(stream.TryEnterWrite());
            var pending = stream.WriteFrameAsync(frame, cancellationToken);
            if (!pending.IsCompleted)
            {
                return (frames, pending.AsTask());
            }
            await pending;
            stream.ExitWrite();
        }
        Assert.Fail("the socket took 60 MB that no one read");
        return default;
    }

    [Fact]
    public async Task BeforeTheClientsFirstBytes_FramesGoThroughKestrel_AfterThemOnTheSocket()
    {
        using var kestrel = await Pair.OpenAsync();
        using var direct = await Pair.OpenAsync();
        await using var stream = Stream(kestrel, direct);

        // Until bytes come from the client it may not have read the 101, which a frame on the socket could overtake;
        // once they have, every frame goes on the socket.
        await ReadClientFrameAsync(stream, kestrel);
        var late = ServerFrame((byte)'b', 300);
        await WriteFrameAsync(stream, late);
        await stream.WriteAsync(ServerFrame((byte)'c', 5)); // the WebSocket's own frames (pongs, the close) too

        byte[] expected = [.. late, .. ServerFrame((byte)'c', 5)];
        Assert.Equal(expected, await direct.ReadAsync(expected.Length));
        Assert.Empty(await kestrel.CloseAndReadAllAsync());
    }

    [Fact]
    public async Task AFrameWrittenThroughKestrelFirst_KeepsEveryLaterFrameThere()
    {
        using var kestrel = await Pair.OpenAsync();
        using var direct = await Pair.OpenAsync();
        await using var stream = Stream(kestrel, direct);
        var early = ServerFrame((byte)'a', 10);
        var late = ServerFrame((byte)'b', 20);

        // A frame before the client's first bytes (a keep-alive ping to a client that has not connected) goes through
        // Kestrel; a later one on the socket could then overtake it, so the output stays with Kestrel for good.
        await WriteFrameAsync(stream, early);
        await ReadClientFrameAsync(stream, kestrel);
        await WriteFrameAsync(stream, late);

        byte[] expected = [.. early, .. late];
        Assert.Equal(expected, await kestrel.ReadAsync(expected.Length));
        Assert.Empty(await direct.CloseAndReadAllAsync());
    }

    [Fact]
    public async Task WhatTheKernelDoesNotTakeAtOnce_IsSentLater_WholeAndInOrder()
    {
        using var kestrel = await Pair.OpenAsync();
        using var direct = await Pair.OpenAsync(serverSendBuffer: 8 * 1024);
        await using var stream = Stream(kestrel, direct);
        await ReadClientFrameAsync(stream, kestrel);

        var (frames, pending) = await WriteUntilASendWaitsAsync(stream, CancellationToken.None);

        // The writer waits for the rest (holding the write lock, so nothing can come between); then the next frame.
        var total = frames.Sum(f => f.Length) + 7;
        var reading = direct.ReadAsync(total);
        await pending.WaitAsync(Timeout);
        stream.ExitWrite();
        await stream.WriteAsync(ServerFrame((byte)'z', 5));

        var expected = frames.SelectMany(f => f).Concat(ServerFrame((byte)'z', 5)).ToArray();
        Assert.Equal(expected, await reading);
    }

    [Fact]
    public async Task ASendWaitingForAPeerThatDoesNotRead_EndsWhenItsTokenIsCancelled()
    {
        using var kestrel = await Pair.OpenAsync();
        using var direct = await Pair.OpenAsync(serverSendBuffer: 8 * 1024);
        await using var stream = Stream(kestrel, direct);
        await ReadClientFrameAsync(stream, kestrel);
        using var abort = new CancellationTokenSource();

        var (_, pending) = await WriteUntilASendWaitsAsync(stream, abort.Token);

        // The connection's abort (a slow consumer's close deadline, the node stopping) cancels the writer's token.
        abort.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Timeout));
    }

    [Fact]
    public async Task TheStandaloneServer_SendsOnTheSocket_AndConfigurationTurnsItOff()
    {
        foreach (var (value, expected) in new[] { ((string?)null, "on the socket True"), ("false", "on the socket False") })
        {
            var environment = new Dictionary<string, string> { ["Herald__AllowAnonymous"] = "true", ["Herald__ApiKey"] = "direct-send-test-key-0123456789" };
            if (value is not null)
            {
                environment["Herald__WebSocketDirectSend"] = value;
            }
            await using var server = await HeraldProcess.StartAsync(environment, TimeSpan.FromSeconds(30));
            Assert.False(server.HasExited, server.Output);
            Assert.Contains(expected, server.Output, StringComparison.Ordinal);

            // Either way a subscriber gets its pushes, each once and in order, after the replies that came first.
            await using var client = await WsClient.OpenAsync(server.WebSocketUri);
            Assert.True((await client.CommandAsync("""{"op":"connect"}""")).TryGetProperty("result", out _));
            Assert.True((await client.CommandAsync("""{"op":"subscribe","channel":"direct"}""")).TryGetProperty("result", out _));
            for (var n = 1; n <= 20; n++)
            {
                using var publish = new HttpRequestMessage(HttpMethod.Post, "/api/publish")
                {
                    Content = new StringContent($$$"""{"channel":"direct","data":{"n":{{{n}}}}}""", System.Text.Encoding.UTF8, "application/json"),
                };
                publish.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "direct-send-test-key-0123456789");
                using var response = await server.Http.SendAsync(publish);
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            }
            for (var n = 1; n <= 20; n++)
            {
                var push = await client.NextPushAsync(Timeout);
                Assert.Equal(n, push.GetProperty("push").GetProperty("pub").GetProperty("data").GetProperty("n").GetInt32());
            }
        }
    }
}
