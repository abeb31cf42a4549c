using System.Net.Sockets;
using System.Text;
using Herald.Integration.Tests.Infrastructure;

namespace Herald.Integration.Tests;

public sealed class SlowlorisTests
{
    [Fact]
    public async Task HandshakeTrickledHeaderByHeader_IsDroppedAtTheHandshakeTimeout_WhileOthersKeepReceiving()
    {
        await using var server = await TestServer.StartAsync(o => o.HandshakeTimeout = TimeSpan.FromSeconds(1));
        await using var bystander = await server.ConnectAsync();
        await bystander.CommandAsync("""{"op":"subscribe","channel":"chat:loris"}""");

        using var loris = new TcpClient();
        await loris.ConnectAsync("127.0.0.1", server.Port);
        var stream = loris.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /ws HTTP/1.1\r\nHost: x\r\n"));
        var trickle = Task.Run(async () =>
        {
            // One more header line every 200 ms, never finishing the request.
            for (var i = 0; i < 100; i++)
            {
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"X-Slow-{i}: a\r\n"));
                await Task.Delay(200);
            }
        });

        await server.PublishAsync("chat:loris", "1");
        Assert.Equal(1UL, (await bystander.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());

        // Kestrel answers 408 and closes, or resets: either way the read ends long before the trickle would.
        var buffer = new byte[1024];
        var ended = Task.Run(async () =>
        {
            try
            {
                while (await stream.ReadAsync(buffer) > 0)
                {
                }
            }
            catch (IOException)
            {
            }
        });
        await ended.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(trickle.IsCompletedSuccessfully && !trickle.IsFaulted, "the trickle ran to its end: the connection was never dropped");
    }
}
