using System.Security.Cryptography;
using Herald;
using Herald.Server;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;

var commandLine = CommandLine.Parse(args);
switch (commandLine.What)
{
    case CommandLine.Action.Help:
        Console.Out.WriteLine(CommandLine.Help);
        return 0;
    case CommandLine.Action.Version:
        Console.Out.WriteLine($"herald {CommandLine.Version}");
        return 0;
    case CommandLine.Action.Fail:
        Console.Error.WriteLine(commandLine.Error);
        return CommandLine.UsageExitCode;
}

try
{
    await RunAsync(commandLine);
    return 0;
}
// A configuration the server cannot start with is one line, naming the key; a stack trace helps nobody here.
catch (OptionsValidationException e)
{
    Console.Error.WriteLine($"herald: invalid configuration: {string.Join(" ", e.Failures)}");
    return CommandLine.StartFailedExitCode;
}
catch (InvalidOperationException e) when (e.Message.StartsWith("Failed to convert configuration value", StringComparison.Ordinal))
{
    Console.Error.WriteLine($"herald: invalid configuration: {e.Message}{(e.InnerException is { } inner ? " " + inner.Message : "")}");
    return CommandLine.StartFailedExitCode;
}
catch (IOException e) when (e.Message.StartsWith("Failed to bind", StringComparison.Ordinal))
{
    Console.Error.WriteLine($"herald: {e.Message}");
    return CommandLine.StartFailedExitCode;
}

static async Task RunAsync(CommandLine commandLine)
{
    // The demo (wwwroot: the chat at /, the board at /board.html, the dashboard at /dashboard.html, the JS client at /js,
    // the pages' libraries at /vendor) is copied next to the
    // build output, so it is served whatever the working directory is.
    var webRoot = Path.Combine(AppContext.BaseDirectory, "wwwroot");
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions
    {
        Args = commandLine.HostArgs,
        WebRootPath = Directory.Exists(webRoot) ? webRoot : null,
    });

    // ASP.NET Core's hosting starts an Activity and a logging scope for every request as soon as its logger is on at any
    // level, though nothing reads them unless a log provider includes scopes or a tracer listens; for a server whose
    // requests are mostly polls, that is a few per cent of its CPU. Off by default, below every other source, so
    // appsettings.json, environment variables (Logging__LogLevel__…) or the command line turn it back on
    // (Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics). An ActivityListener (OpenTelemetry's tracing) still
    // gets its per-request Activity either way: the hosting creates one whenever its ActivitySource has a listener.
    //
    // Kestrel's sockets transport runs each connection's sends and request processing inline, on the thread that has the
    // data, instead of queuing them to one of a few I/O queues: a fan-out to 10,000 WebSockets otherwise leaves thousands
    // of sends in those queues, and a publish request's read waits behind them (docs/benchmarks.md, "Publishing while
    // the fan-out is busy"). Herald's own code never blocks a thread; Kestrel:Sockets binds the rest of the transport's
    // options the same way.
    //
    // A WebSocket's frames go straight onto its socket (Herald:WebSocketDirectSend), and the WebSocket leaves Kestrel's
    // HTTP layer after its handshake (Herald:WebSocketHandoff): this server's Kestrel has no connection middleware or
    // request state of an application's that either would bypass, and TLS connections keep Kestrel's path whatever the
    // options say.
    builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource
    {
        InitialData = [new(HostingDiagnosticsLogLevel, "None"), new(InlineScheduling, "true"), new(WebSocketDirectSend, "true"), new(WebSocketHandoff, "true")],
    });

    if (commandLine.ConfigFile is not null)
    {
        // Over appsettings*.json (the last file source), under environment variables and the command line, as the host's own sources are.
        var sources = builder.Configuration.Sources;
        var json = new Microsoft.Extensions.Configuration.Json.JsonConfigurationSource { Path = commandLine.ConfigFile, Optional = false, ReloadOnChange = false };
        json.ResolveFileProvider();
        var lastFile = sources.Select((source, i) => (source, i)).Last(x => x.source is Microsoft.Extensions.Configuration.FileConfigurationSource).i;
        sources.Insert(lastFile + 1, json);
    }

    // Port 8080 unless --urls, ASPNETCORE_URLS or configuration says otherwise.
    if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]))
    {
        builder.WebHost.UseUrls("http://localhost:8080");
    }

    // No "Server: Kestrel" header: it tells a client nothing it needs, and every poll answer would carry it.
    builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
    builder.Services.Configure<SocketTransportOptions>(builder.Configuration.GetSection(SocketsSection));

    // The server API needs a key; rather than running with the API silently disabled, make one up and say so.
    var generatedApiKey = string.IsNullOrEmpty(builder.Configuration["Herald:ApiKey"])
        ? Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_')
        : null;
    builder.Services.AddHerald(options =>
    {
        if (generatedApiKey is not null)
        {
            options.ApiKey = generatedApiKey;
        }
    });
    // Herald:Redis:Configuration set: every server on that Redis is one Herald (history, fan-out and presence in Redis).
    if (!string.IsNullOrWhiteSpace(builder.Configuration["Herald:Redis:Configuration"]))
    {
        builder.Services.AddHeraldRedis();
    }

    // The demo chat's server side (/roll, and refusing empty or over-long chat messages); only chat: text messages.
    if (builder.Configuration.GetValue("Demo:ChatHandler", defaultValue: true))
    {
        builder.Services.AddHeraldHandler<ChatHandler>();
    }

    // The demo board's server side: a board: publication must be one 4-byte position.
    if (builder.Configuration.GetValue("Demo:BoardHandler", defaultValue: true))
    {
        builder.Services.AddHeraldHandler<BoardHandler>();
    }

    // Any Herald:Proxy:<Hook>:Url set: those hooks are decided by the application's backend over HTTP (after the demo
    // handler, when it is on: handlers are asked in registration order).
    if (builder.Configuration.GetSection("Herald:Proxy").GetChildren().Any(hook => !string.IsNullOrWhiteSpace(hook["Url"])))
    {
        builder.Services.AddHeraldProxy();
    }

    var app = builder.Build();
    app.UseDefaultFiles();
    app.UseStaticFiles();
    app.MapHerald();

    if (generatedApiKey is not null)
    {
        ServerLog.GeneratedApiKey(app.Logger, generatedApiKey);
    }
    if (app.Environment.WebRootPath is { } webRootPath && !File.Exists(Path.Combine(webRootPath, "js", "index.js")))
    {
        ServerLog.JsClientMissing(app.Logger, Path.Combine(webRootPath, "js", "index.js"));
    }
    var options = app.Services.GetRequiredService<IOptions<HeraldOptions>>().Value;
    var namespaces = string.Join(", ", options.Namespaces.Keys.Prepend(HeraldOptions.DefaultNamespace).Distinct());
    ServerLog.Profile(app.Logger, app.Environment.EnvironmentName, options.AllowAnonymous, namespaces);
    var sockets = app.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value;
    ServerLog.Transport(app.Logger, sockets.UnsafePreferInlineScheduling, options.WebSocketDirectSend, options.WebSocketHandoff);
    ServerLog.GarbageCollector(app.Logger, System.Runtime.GCSettings.IsServerGC ? "Server" : "Workstation");

    await app.RunAsync();
}

/// <summary>What the standalone server sets before any configuration source is read.</summary>
internal static partial class Program
{
    /// <summary>The log level of ASP.NET Core's per-request diagnostics (request scope, request start and end).</summary>
    internal const string HostingDiagnosticsLogLevel = "Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics";

    /// <summary>The section bound to Kestrel's <see cref="SocketTransportOptions"/>.</summary>
    internal const string SocketsSection = "Kestrel:Sockets";

    /// <summary>Whether the sockets transport runs sends and request processing inline (on by default here).</summary>
    internal const string InlineScheduling = SocketsSection + ":" + nameof(SocketTransportOptions.UnsafePreferInlineScheduling);

    /// <summary>Whether WebSocket frames are sent on the connection's socket itself (on by default here).</summary>
    internal const string WebSocketDirectSend = "Herald:" + nameof(HeraldOptions.WebSocketDirectSend);

    /// <summary>Whether a WebSocket leaves Kestrel's HTTP layer after its handshake (on by default here).</summary>
    internal const string WebSocketHandoff = "Herald:" + nameof(HeraldOptions.WebSocketHandoff);
}
