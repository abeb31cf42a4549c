// The floor systems of Herald's benchmarks (see ../README.md): not products, the least a .NET server on Kestrel does
// to serve Herald's WebSocket fan-out, measured beside Herald to show what the stack itself costs.
//   kestrel:      Kestrel + UseWebSockets; GET /ws accepted by ASP.NET Core, each publication sent with WebSocket.SendAsync.
//   kestrel-raw:  (--raw) a connection middleware answers the GET /ws upgrade by hand on the transport and writes
//                 pre-built RFC 6455 frames straight into it; no HTTP/1.1 connection object is kept after the upgrade.
//   kestrel-socket: (--socket) kestrel-raw writing each frame to the connection's socket itself, one non-blocking
//                 send on the publisher's thread (not through the transport's output pipe), with Kestrel's sockets
//                 transport inline as in Herald's standalone server: the least any .NET transport owning the socket does.
// All three speak enough of herald.json for the bench's Herald client (connect, subscribe, pushes) and take
// POST /api/publish {"channel":…,"data":…} -> 200 {"epoch":"floor","offset":N} (no API key, no history, no queue).
// Port: --urls http://127.0.0.1:PORT.
using System.Text.Json;
using Herald.Bench.Kestrel;

var socket = args.Contains("--socket");
var raw = socket || args.Contains("--raw");
RawWebSocket.DirectSocket = socket;
var builder = WebApplication.CreateBuilder([.. args.Where(a => a is not "--raw" and not "--socket")]);
if (socket)
{
    // No I/O queue hop for what still goes through Kestrel (client frames, the publish requests), as in Herald's server.
    builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = true);
}
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.Limits.MaxConcurrentConnections = null;
    kestrel.Limits.MaxConcurrentUpgradedConnections = null;
    kestrel.AddServerHeader = false;
    if (raw)
    {
        // Applies to the --urls endpoints too; runs before Kestrel's HTTP layer on every new connection.
        kestrel.ConfigureEndpointDefaults(listen => listen.Use(next => connection => RawWebSocket.RunAsync(connection, next, RawWebSocket.Hub)));
    }
});

var app = builder.Build();
var hub = raw ? RawWebSocket.Hub : KestrelWebSocket.Hub;

app.MapPost("/api/publish", async (HttpContext http) =>
{
    using var body = await JsonDocument.ParseAsync(http.Request.Body, default, http.RequestAborted);
    if (body.RootElement.ValueKind != JsonValueKind.Object
        || !body.RootElement.TryGetProperty("channel", out var channel) || channel.ValueKind != JsonValueKind.String
        || !body.RootElement.TryGetProperty("data", out var data))
    {
        return Results.BadRequest();
    }
    var name = channel.GetString()!;
    var offset = await hub.PublishAsync(name, o => Wire.Push(name, o, data));
    return Results.Text(Wire.Published(offset), "application/json");
});

if (!raw)
{
    app.UseWebSockets(new WebSocketOptions
    {
        // Herald's defaults (Herald:KeepAliveInterval 25 s, KeepAliveTimeout 20 s): the same liveness job.
        KeepAliveInterval = TimeSpan.FromSeconds(25),
        KeepAliveTimeout = TimeSpan.FromSeconds(20),
    });
    app.Map("/ws", KestrelWebSocket.RunAsync);
}

app.Run();
