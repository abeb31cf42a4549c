using Herald.Tests.Infrastructure;
using System.Net.WebSockets;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class SlowConsumerTests
{
    [Fact]
    public async Task SubscriberThatStopsReading_IsClosedAsSlowConsumer_WhileOthersReceiveEverything()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            // Room for the paced healthy reader (at most ~100 pushes of ~2 KB outstanding) with a wide margin: on a
            // loaded CI machine a 256 KiB budget was too close and closed the healthy client too. The stuck client is
            // sent ~10 MB, far past either limit.
            o.MaxQueuedMessages = 1000;
            o.MaxQueuedBytes = 1024 * 1024;
            o.CloseTimeout = TimeSpan.FromSeconds(1);
        });
        const string Channel = "nohist:slow";
        await using var healthy = await server.ConnectAsync();
        await healthy.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""");

        // The stuck client: a raw TCP connection that completes the handshake and subscribes, then never reads.
        using var stuck = new System.Net.Sockets.TcpClient();
        stuck.ReceiveBufferSize = 4096;
        await stuck.ConnectAsync("127.0.0.1", server.Port);
        var stream = stuck.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
            $"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
        await stream.WriteAsync(MaskedText("{\"id\":1,\"op\":\"connect\"}\n{\"id\":2,\"op\":\"subscribe\",\"channel\":\"" + Channel + "\"}"));
        await Wait.UntilAsync(() => server.Node.ActiveChannels == 1 && server.Node.Metrics.Commands >= 4, TimeSpan.FromSeconds(5), "both subscriptions are in place");

        var payload = "\"" + new string('x', 2000) + "\"";
        var ns = server.Node.Options.FindNamespace("nohist")!;
        var data = System.Text.Encoding.UTF8.GetBytes(payload);
        const int Count = 5000; // ~10 MB to the stuck client: far beyond its queue and the kernel's buffers
        var received = 0;
        var reading = Task.Run(async () =>
        {
            while (received < Count)
            {
                var push = await healthy.NextPushAsync(TimeSpan.FromSeconds(20));
                Assert.Equal((ulong)(received + 1), push.GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
                received++;
            }
        });
        for (var i = 0; i < Count; i++)
        {
            await server.Node.PublishAsync(Channel, ns, data, null);
            if (i % 50 == 49)
            {
                // Pace the publisher to the healthy reader, so only the stuck client falls behind.
                var sent = i + 1;
                await Wait.UntilAsync(() => Volatile.Read(ref received) >= sent - 50 || reading.IsCompleted, TimeSpan.FromSeconds(20), "the healthy client keeps up");
            }
        }
        await reading;
        Assert.Equal(Count, received);

        await Wait.UntilAsync(() => server.Node.Metrics.SlowConsumerCloses == 1, TimeSpan.FromSeconds(10), "the stuck client is closed as a slow consumer");
        await Wait.UntilAsync(() => server.Node.Metrics.WebSocketConnections == 1, TimeSpan.FromSeconds(10), "the stuck connection is gone");

        // Its queue was dropped: after a collection the server holds nowhere near the 10 MB it was sent.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.True(GC.GetTotalMemory(forceFullCollection: true) < 200L * 1024 * 1024);

        // The healthy connection goes on.
        Assert.True((await healthy.CommandAsync("""{"op":"ping"}""")).TryGetProperty("result", out _));
    }

    [Fact]
    public async Task SlowConsumerThatReadsLater_SeesCloseCode4002()
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxQueuedMessages = 16;
            o.CloseTimeout = TimeSpan.FromSeconds(5);
        });
        await using var client = await server.ConnectAsync();
        await client.CommandAsync("""{"op":"subscribe","channel":"nohist:late"}""");
        var ns = server.Node.Options.FindNamespace("nohist")!;
        // Publishing straight into the node queues faster than the writer can drain: the queue overflows. The fan-out
        // runs behind the publisher, so the close is counted a little after the publication that caused it.
        for (var i = 0; i < 10_000 && server.Node.Metrics.SlowConsumerCloses == 0; i++)
        {
            await server.Node.PublishAsync("nohist:late", ns, "{}"u8.ToArray(), null);
        }
        await Wait.UntilAsync(() => server.Node.Metrics.SlowConsumerCloses == 1, TimeSpan.FromSeconds(10), "the slow consumer is closed");
        Assert.Equal((WebSocketCloseStatus)4002, await client.WaitClosedAsync());
    }

    private static byte[] MaskedText(string text)
    {
        var payload = System.Text.Encoding.UTF8.GetBytes(text);
        var frame = new List<byte> { 0x81 };
        if (payload.Length < 126)
        {
            frame.Add((byte)(0x80 | payload.Length));
        }
        else
        {
            frame.Add(0x80 | 126);
            frame.Add((byte)(payload.Length >> 8));
            frame.Add((byte)payload.Length);
        }
        byte[] mask = [1, 2, 3, 4];
        frame.AddRange(mask);
        frame.AddRange(payload.Select((b, i) => (byte)(b ^ mask[i % 4])));
        return [.. frame];
    }
}
