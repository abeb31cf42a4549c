using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Herald.Tests.Infrastructure;

namespace Herald.Integration.Tests;

/// <summary>
/// Latest-value channels (<c>Herald:Namespaces:&lt;ns&gt;:Conflate</c>): a subscriber that stops reading is not closed, its
/// queue stays bounded, and when it reads again it gets the newest publication and a skip notice for exactly what it
/// missed; a subscriber that keeps up sees every offset; polls and resubscribes get the newest and what was skipped.
/// </summary>
public sealed class ConflateTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private const int MaxQueuedMessages = 1000;
    private const long MaxQueuedBytes = 1024 * 1024;

    // ~2 KB each: 10,000 of them (~20 MB) are far past the stuck reader's queue and the kernel's buffers.
    private static readonly byte[] Payload = Encoding.UTF8.GetBytes("\"" + new string('x', 2000) + "\"");

    private static Task<TestServer> StartAsync(bool conflate = true) => TestServer.StartAsync(o =>
    {
        o.MaxQueuedMessages = MaxQueuedMessages;
        o.MaxQueuedBytes = MaxQueuedBytes;
        o.CloseTimeout = TimeSpan.FromSeconds(30);
        o.Namespaces["latest"] = new NamespaceOptions { HistorySize = 10, Conflate = conflate, AllowClientPublish = true };
    });

    [Fact]
    public async Task WebSocketReaderThatStops_IsNotClosed_QueueStaysBounded_AndOnResumingGetsTheNewestAndASkipNotice_WhileAFastReaderGetsEveryOffset()
    {
        await using var server = await StartAsync();
        const string Channel = "latest:ws";
        const int Count = 10_000;
        await using var fast = await server.ConnectAsync();
        await fast.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");
        using var stuck = await StuckWebSocket.OpenAsync(server, Channel);

        await PublishPacedAsync(server, Channel, Count, fast);

        // Everything is published: the stuck reader's server-side queue holds at most half its bounds and one marker.
        var queue = server.Node.SubscribersOf(Channel).Select(s => s.Session.Outbound).MaxBy(q => q.QueuedBytes)!;
        Assert.InRange(queue.Reader.Count, 1, MaxQueuedMessages / 2 + 1);
        Assert.InRange(queue.QueuedBytes, 1, MaxQueuedBytes / 2 + 4096);
        Assert.Equal(0, server.Node.Metrics.SlowConsumerCloses);

        var (pubs, skips) = await stuck.ResumeUntilAsync(Count);
        AssertEveryOffsetOnceOrSkipped(pubs, skips, Count);
        Assert.NotEmpty(skips);
        Assert.Equal(skips.Sum(s => (long)(s.To - s.From + 1)), server.Node.Metrics.ConflatedSkips);
        Assert.Equal(WebSocketState.Open, stuck.Socket.State);
        Assert.Equal(0, server.Node.Metrics.SlowConsumerCloses);
    }

    [Fact]
    public async Task WebSocketReaderThatStops_OnANamespaceWithoutConflate_IsStillClosed4002()
    {
        await using var server = await StartAsync(conflate: false);
        const string Channel = "latest:plain";
        using var stuck = await StuckWebSocket.OpenAsync(server, Channel);
        var ns = server.Node.Options.FindNamespace("latest")!;
        for (var i = 0; i < 10_000 && server.Node.Metrics.SlowConsumerCloses == 0; i++)
        {
            await server.Node.PublishAsync(Channel, ns, Payload, null);
        }
        Assert.Equal(1, server.Node.Metrics.SlowConsumerCloses);
        Assert.Equal((WebSocketCloseStatus)4002, await stuck.ResumeUntilClosedAsync());
    }

    [Fact]
    public async Task SseStreamThatStops_IsNotClosed_AndOnResumingGetsTheNewestAndASkipEventWhoseIdIsTheLastSkipped()
    {
        await using var server = await StartAsync();
        const string Channel = "latest:sse";
        const int Count = 10_000;
        await using var fast = await server.ConnectAsync();
        await fast.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");

        using var http = new HttpClient(SmallReceiveBuffers()) { BaseAddress = server.BaseUri };
        using var response = await http.GetAsync($"/sse?channel={Channel}", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var stream = new SseStream(new GatedStream(await response.Content.ReadAsStreamAsync(), gate.Task), response);
        // However the test ends, the reader must be let go, or disposing it would wait at the gate for ever.
        using var opened = new GateOpener(gate);
        await Wait.UntilAsync(() => server.Node.SubscribersOf(Channel).Length == 2, Timeout, "the stream is subscribed");

        await PublishPacedAsync(server, Channel, Count, fast);
        Assert.Equal(0, server.Node.Metrics.SlowConsumerCloses);
        var queue = server.Node.SubscribersOf(Channel).Select(s => s.Session.Outbound).MaxBy(q => q.QueuedBytes)!;
        Assert.InRange(queue.Reader.Count, 1, MaxQueuedMessages / 2 + 1);

        gate.TrySetResult();
        Assert.True((await stream.NextAsync(Timeout)).Json.TryGetProperty("connected", out _));
        var subscribed = (await stream.NextAsync(Timeout)).Json.GetProperty("subscribed");
        var epoch = subscribed.GetProperty("epoch").GetString();
        var pubs = new List<ulong>();
        var skips = new List<(ulong From, ulong To)>();
        while (pubs.Count == 0 || pubs[^1] != Count)
        {
            var next = await stream.NextAsync(Timeout);
            var push = next.Json.GetProperty("push");
            if (push.TryGetProperty("skipped", out var skipped))
            {
                var range = (skipped.GetProperty("from").GetUInt64(), skipped.GetProperty("to").GetUInt64());
                skips.Add(range);
                Assert.Equal($"{range.Item2}.{epoch}", next.Id); // a reconnect from here resumes after the skipped ones
            }
            else
            {
                var offset = push.GetProperty("pub").GetProperty("offset").GetUInt64();
                pubs.Add(offset);
                Assert.Equal($"{offset}.{epoch}", next.Id);
            }
        }
        AssertEveryOffsetOnceOrSkipped(pubs, skips, Count);
        Assert.NotEmpty(skips);
        Assert.Equal(0, server.Node.Metrics.SlowConsumerCloses);
    }

    [Fact]
    public async Task Poll_BehindOnAConflatedChannel_AnswersTheNewestAndWhatItSkipped_NotTheBacklog()
    {
        await using var server = await StartAsync();
        const string Channel = "latest:poll";
        for (var i = 1; i <= 100; i++)
        {
            await server.PublishAsync(Channel, $$"""{"n":{{i}}}""");
        }
        var epoch = (await PollAsync(server, $"channel={Channel}")).GetProperty("epoch").GetString();

        var behind = await PollAsync(server, $"channel={Channel}&offset=10&epoch={epoch}");
        Assert.True(behind.GetProperty("recovered").GetBoolean());
        Assert.Equal(100UL, behind.GetProperty("offset").GetUInt64());
        Assert.Equal([100], behind.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("data").GetProperty("n").GetInt32()));
        Assert.Equal(11UL, behind.GetProperty("skipped").GetProperty("from").GetUInt64());
        Assert.Equal(99UL, behind.GetProperty("skipped").GetProperty("to").GetUInt64());

        // One behind: the newest, nothing skipped.
        var oneBehind = await PollAsync(server, $"channel={Channel}&offset=99&epoch={epoch}");
        Assert.Equal([100UL], oneBehind.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        Assert.False(oneBehind.TryGetProperty("skipped", out _));

        // A long poll at the head is woken by the next publication and gets it, with nothing skipped.
        var parked = PollAsync(server, $"channel={Channel}&offset=100&epoch={epoch}&wait=10");
        await Wait.UntilAsync(() => server.Node.ParkedPolls == 1, Timeout, "the long poll is parked");
        await server.PublishAsync(Channel, """{"n":101}""");
        var woken = await parked.WaitAsync(Timeout);
        Assert.Equal([101UL], woken.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        Assert.False(woken.TryGetProperty("skipped", out _));

        // history is not conflated: it reads what it asks for.
        await using var client = await server.ConnectAsync();
        var history = await client.CommandAsync($$$"""{"op":"history","channel":"{{{Channel}}}","since":{"offset":95,"epoch":"{{{epoch}}}"}}""");
        Assert.Equal(6, history.GetProperty("result").GetProperty("publications").GetArrayLength());
    }

    [Fact]
    public async Task SubscribeWithSince_BehindOnAConflatedChannel_RepliesWithTheNewestAndWhatItSkipped()
    {
        await using var server = await StartAsync();
        const string Channel = "latest:resubscribe";
        for (var i = 1; i <= 50; i++)
        {
            await server.PublishAsync(Channel, $$"""{"n":{{i}}}""");
        }
        await using var client = await server.ConnectAsync();
        var head = (await client.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result");
        await client.CommandAsync($$"""{"op":"unsubscribe","channel":"{{Channel}}"}""");
        var epoch = head.GetProperty("epoch").GetString();

        var reply = (await client.CommandAsync($$$"""{"op":"subscribe","channel":"{{{Channel}}}","since":{"offset":3,"epoch":"{{{epoch}}}"}}""")).GetProperty("result");
        Assert.True(reply.GetProperty("recovered").GetBoolean());
        Assert.Equal(50UL, reply.GetProperty("offset").GetUInt64());
        Assert.Equal([50UL], reply.GetProperty("publications").EnumerateArray().Select(p => p.GetProperty("offset").GetUInt64()));
        Assert.Equal(4UL, reply.GetProperty("skipped").GetProperty("from").GetUInt64());
        Assert.Equal(49UL, reply.GetProperty("skipped").GetProperty("to").GetUInt64());

        // Live delivery goes on from the newest, with no gap.
        await server.PublishAsync(Channel, """{"n":51}""");
        Assert.Equal(51UL, (await client.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    [Fact]
    public void Conflate_DefaultsToOff_AndNeedsHistoryToServePollsTheNewest()
    {
        Assert.False(new NamespaceOptions().Conflate);
        var options = new HeraldOptions();
        options.Namespaces["prices"] = new NamespaceOptions { Conflate = true, HistorySize = 0 };
        Assert.Contains(options.Validate(), p => p.Contains("Herald:Namespaces:prices:Conflate", StringComparison.Ordinal));
        options.Namespaces["prices"].HistorySize = 1;
        Assert.Empty(options.Validate());
    }

    [Fact]
    public async Task Conflate_FromConfiguration_WithoutHistory_StopsTheServerAtStart()
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await using var server = await TestServer.StartAsync(o => o.Namespaces["prices"] = new NamespaceOptions { Conflate = true, HistorySize = 0 });
        });
        Assert.Contains("Herald:Namespaces:prices:Conflate", error.ToString(), StringComparison.Ordinal);
    }

    /// <summary>Every offset 1..<paramref name="count"/> is either received once or inside one skip notice, in order, and the last received is the newest.</summary>
    private static void AssertEveryOffsetOnceOrSkipped(List<ulong> pubs, List<(ulong From, ulong To)> skips, int count)
    {
        // Rebuild the order of arrival: a skip notice always comes just before the publication after its 'to'.
        var next = 1UL;
        var skipIndex = 0;
        foreach (var offset in pubs)
        {
            if (skipIndex < skips.Count && skips[skipIndex].To + 1 == offset)
            {
                Assert.Equal(next, skips[skipIndex].From);
                next = skips[skipIndex].To + 1;
                skipIndex++;
            }
            Assert.Equal(next, offset);
            next++;
        }
        Assert.Equal(skips.Count, skipIndex);
        Assert.Equal((ulong)count + 1, next);
    }

    // Publishes straight into the node, paced to the fast reader (within 50 of it) so that only the stuck one falls behind.
    private static async Task PublishPacedAsync(TestServer server, string channel, int count, WsClient fast)
    {
        var ns = server.Node.Options.FindNamespace("latest")!;
        var received = 0;
        var reading = Task.Run(async () =>
        {
            while (received < count)
            {
                var push = await fast.NextPushAsync(Timeout);
                Assert.Equal((ulong)(received + 1), push.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
                Interlocked.Increment(ref received);
            }
        });
        for (var i = 0; i < count; i++)
        {
            await server.Node.PublishAsync(channel, ns, Payload, null);
            if (i % 50 == 49)
            {
                var sent = i + 1;
                await Wait.UntilAsync(() => Volatile.Read(ref received) >= sent - 50 || reading.IsCompleted, Timeout, "the fast reader keeps up");
            }
        }
        await reading.WaitAsync(Timeout);
        Assert.Equal(count, received);
    }

    private static async Task<JsonElement> PollAsync(TestServer server, string query)
    {
        var text = await server.Http.GetStringAsync($"/poll?{query}");
        var channels = JsonDocument.Parse(text).RootElement.GetProperty("channels");
        return channels.EnumerateObject().Single().Value.Clone();
    }

    /// <summary>Connections whose sockets have a 4 KiB receive buffer, so a reader that stops reading stalls the server soon.</summary>
    internal static SocketsHttpHandler SmallReceiveBuffers() => new()
    {
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096, NoDelay = true };
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    };

    /// <summary>A real WebSocket client that subscribes, then reads nothing until told to.</summary>
    private sealed class StuckWebSocket : IDisposable
    {
        private readonly HttpMessageInvoker _invoker;
        private readonly byte[] _buffer = new byte[64 * 1024];

        private StuckWebSocket(ClientWebSocket socket, HttpMessageInvoker invoker)
        {
            Socket = socket;
            _invoker = invoker;
        }

        public ClientWebSocket Socket { get; }

        public static async Task<StuckWebSocket> OpenAsync(TestServer server, string channel)
        {
            var invoker = new HttpMessageInvoker(SmallReceiveBuffers());
            var socket = new ClientWebSocket();
            socket.Options.AddSubProtocol("herald.json");
            using var cts = new CancellationTokenSource(Timeout);
            await socket.ConnectAsync(server.WebSocketUri, invoker, cts.Token);
            var stuck = new StuckWebSocket(socket, invoker);
            await socket.SendAsync(Encoding.UTF8.GetBytes($$"""{"id":1,"op":"connect"}""" + "\n" + $$"""{"id":2,"op":"subscribe","channel":"{{channel}}"}"""), WebSocketMessageType.Text, true, cts.Token);
            var replies = 0;
            while (replies < 2)
            {
                var (lines, _) = await stuck.ReceiveAsync(cts.Token);
                replies += lines.Count(l => l.Contains("\"result\"", StringComparison.Ordinal));
            }
            return stuck;
        }

        /// <summary>Reads again, until the publication <paramref name="newest"/> arrives; returns the publications' offsets and the skip notices.</summary>
        public async Task<(List<ulong> Pubs, List<(ulong From, ulong To)> Skips)> ResumeUntilAsync(int newest)
        {
            using var cts = new CancellationTokenSource(Timeout);
            var pubs = new List<ulong>();
            var skips = new List<(ulong, ulong)>();
            while (pubs.Count == 0 || pubs[^1] != (ulong)newest)
            {
                var (lines, closed) = await ReceiveAsync(cts.Token);
                Assert.False(closed, $"closed {Socket.CloseStatus} {Socket.CloseStatusDescription}");
                foreach (var line in lines)
                {
                    var push = JsonDocument.Parse(line).RootElement.GetProperty("push");
                    if (push.TryGetProperty("skipped", out var skipped))
                    {
                        skips.Add((skipped.GetProperty("from").GetUInt64(), skipped.GetProperty("to").GetUInt64()));
                    }
                    else
                    {
                        pubs.Add(push.GetProperty("pub").GetProperty("offset").GetUInt64());
                    }
                }
            }
            return (pubs, skips);
        }

        /// <summary>Reads again until the server's close frame; returns its code.</summary>
        public async Task<WebSocketCloseStatus?> ResumeUntilClosedAsync()
        {
            using var cts = new CancellationTokenSource(Timeout);
            while (!(await ReceiveAsync(cts.Token)).Closed)
            {
            }
            return Socket.CloseStatus;
        }

        private async Task<(List<string> Lines, bool Closed)> ReceiveAsync(CancellationToken cancellationToken)
        {
            using var message = new MemoryStream();
            while (true)
            {
                var result = await Socket.ReceiveAsync(_buffer, cancellationToken);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return ([], true);
                }
                message.Write(_buffer, 0, result.Count);
                if (result.EndOfMessage)
                {
                    return ([.. Encoding.UTF8.GetString(message.GetBuffer(), 0, (int)message.Length).Split('\n')], false);
                }
            }
        }

        public void Dispose()
        {
            Socket.Abort();
            Socket.Dispose();
            _invoker.Dispose();
        }
    }

    private sealed class GateOpener(TaskCompletionSource gate) : IDisposable
    {
        public void Dispose() => gate.TrySetResult();
    }

    /// <summary>A stream whose reads wait for a gate: the reader above it stops reading the socket until the gate opens.</summary>
    private sealed class GatedStream(Stream inner, Task gate) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await gate.WaitAsync(cancellationToken);
            return await inner.ReadAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
