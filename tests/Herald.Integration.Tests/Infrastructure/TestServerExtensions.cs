namespace Herald.Integration.Tests.Infrastructure;

/// <summary>WebSocket helpers on the shared <see cref="TestServer"/>.</summary>
public static class TestServerExtensions
{
    /// <summary>Connects a WebSocket client and sends <c>connect</c>.</summary>
    public static async Task<WsClient> ConnectAsync(this TestServer server, string? token = null)
    {
        var client = await WsClient.OpenAsync(server.WebSocketUri);
        var reply = await client.CommandAsync(token is null ? """{"op":"connect"}""" : $$"""{"op":"connect","token":"{{token}}"}""");
        Assert.True(reply.TryGetProperty("result", out _), $"connect failed: {reply}");
        return client;
    }
}
