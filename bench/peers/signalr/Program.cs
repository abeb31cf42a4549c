// Minimal ASP.NET Core SignalR peer for Herald's benchmarks (see ../README.md for the wire protocol).
//   Subscribers: WebSocket at /hub (negotiate optional), then invoke Subscribe(channel).
//   Publishers:  POST /publish/{channel} with the payload as the body -> 204 once handed to SignalR's fan-out.
// Port: --urls http://127.0.0.1:PORT, or the PORT environment variable (then bound to 127.0.0.1), else 127.0.0.1:5000.
// Scale-out: --redis HOST:PORT[,options] (or the REDIS environment variable; a StackExchange.Redis configuration
// string) adds SignalR's Redis backplane, so several processes on that Redis serve the same groups.
using System.Text;
using Herald.Bench.SignalR;
using Microsoft.AspNetCore.SignalR;

var builder = WebApplication.CreateBuilder(args);

// Warnings only: no per-request or per-connection logs.
builder.Logging.SetMinimumLevel(LogLevel.Warning);

if (string.IsNullOrEmpty(builder.Configuration["urls"]))
{
    var port = Environment.GetEnvironmentVariable("PORT");
    builder.WebHost.UseUrls($"http://127.0.0.1:{(string.IsNullOrEmpty(port) ? "5000" : port)}");
}

builder.WebHost.ConfigureKestrel(kestrel =>
{
    // Both are null (unlimited) by default; set explicitly so 18,000 idle WebSockets are never capped here.
    kestrel.Limits.MaxConcurrentConnections = null;
    kestrel.Limits.MaxConcurrentUpgradedConnections = null;
    kestrel.AddServerHeader = false;
});

// SignalR defaults kept on purpose: KeepAliveInterval 15 s (server sends {"type":6} when it has sent nothing for 15 s),
// ClientTimeoutInterval 30 s (the server closes a connection it has heard nothing from for 30 s),
// HandshakeTimeout 15 s, MaximumReceiveMessageSize 32 KiB, JSON protocol built in.
var signalR = builder.Services.AddSignalR();
// The backplane as its documentation sets it up, defaults kept: every group send is one PUBLISH, every node
// subscribes to the groups its connections joined.
if (builder.Configuration["redis"] is { Length: > 0 } redis)
{
    signalR.AddStackExchangeRedis(redis);
}

var app = builder.Build();

app.MapHub<BenchHub>("/hub");

app.MapPost("/publish/{channel}", async (string channel, HttpRequest request, IHubContext<BenchHub> hub) =>
{
    using var reader = new StreamReader(request.Body, Encoding.UTF8);
    var body = await reader.ReadToEndAsync(request.HttpContext.RequestAborted);
    await hub.Clients.Group(channel).SendAsync("m", body, request.HttpContext.RequestAborted);
    return Results.NoContent();
});

app.Run();
