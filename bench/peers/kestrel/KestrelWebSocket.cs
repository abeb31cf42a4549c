using System.Buffers;
using System.Net.WebSockets;

namespace Herald.Bench.Kestrel;

/// <summary>The <c>kestrel</c> floor: ASP.NET Core's <c>UseWebSockets</c>, one <see cref="WebSocket"/> per connection.</summary>
internal static class KestrelWebSocket
{
    private const int MaxMessageBytes = 64 * 1024;

    /// <summary>Publications are sent as they are: <see cref="WebSocket.SendAsync(ReadOnlyMemory{byte}, WebSocketMessageType, bool, CancellationToken)"/> frames them.</summary>
    public static Hub Hub { get; } = new(static payload => payload);

    public static async Task RunAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var subscriber = new SocketSubscriber(socket);
        try
        {
            await ReadLoopAsync(socket, subscriber);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException)
        {
            // The client went away: nothing to answer.
        }
        finally
        {
            Hub.Remove(subscriber);
            socket.Abort();
        }
    }

    private static async Task ReadLoopAsync(WebSocket socket, SocketSubscriber subscriber)
    {
        while (true)
        {
            // Idle, a connection holds no receive buffer: the zero-byte receive waits for the next frame, as Herald's does.
            var result = await socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                // Echo the peer's status code, as RFC 6455 asks.
                await socket.CloseOutputAsync(socket.CloseStatus ?? WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
                return;
            }
            var buffer = ArrayPool<byte>.Shared.Rent(MaxMessageBytes);
            try
            {
                var count = 0;
                while (!result.EndOfMessage)
                {
                    if (count == MaxMessageBytes)
                    {
                        await socket.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, "", CancellationToken.None);
                        return;
                    }
                    result = await socket.ReceiveAsync(buffer.AsMemory(count, MaxMessageBytes - count), CancellationToken.None);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }
                    count += result.Count;
                }
                if (Wire.HandleCommands(buffer.AsSpan(0, count), Hub, subscriber) is { } reply)
                {
                    await subscriber.SendAsync(reply);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>
    /// Sends straight through the socket, no queue of its own: concurrent sends wait on the WebSocket's own send lock, in
    /// the order they were started.
    /// </summary>
    private sealed class SocketSubscriber(WebSocket socket) : Subscriber
    {
        public override ValueTask SendAsync(byte[] wire)
        {
            try
            {
                var sent = socket.SendAsync(wire.AsMemory(), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
                return sent.IsCompletedSuccessfully ? default : ObserveAsync(sent);
            }
            catch (Exception e) when (e is WebSocketException or IOException or ObjectDisposedException or InvalidOperationException)
            {
                socket.Abort();
                return default;
            }
        }

        private async ValueTask ObserveAsync(ValueTask sent)
        {
            try
            {
                await sent;
            }
            catch (Exception e) when (e is WebSocketException or IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
            {
                socket.Abort();
            }
        }
    }
}
