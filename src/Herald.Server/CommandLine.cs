using System.Reflection;

namespace Herald.Server;

/// <summary>What the command line asks for: run the server (with these host arguments), print something, or refuse.</summary>
internal sealed record CommandLine(CommandLine.Action What, string[] HostArgs, string? ConfigFile, string? Error)
{
    internal enum Action { Run, Help, Version, Fail }

    /// <summary>Exit code of a refused command line (as sysexits' EX_USAGE).</summary>
    public const int UsageExitCode = 64;

    /// <summary>Exit code of a server that could not start (bad configuration, address in use).</summary>
    public const int StartFailedExitCode = 1;

    // The host's own switches (ASP.NET Core reads them from the command line as configuration keys). Anything else
    // without a ':' is a typo, and a typo silently ignored is a server listening where nobody expects it.
    private static readonly HashSet<string> HostKeys = new(StringComparer.OrdinalIgnoreCase)
    {
        "urls", "environment", "contentRoot", "applicationName", "http_ports", "https_ports",
    };

    /// <summary>
    /// Reads <paramref name="args"/>. <c>--key value</c>, <c>--key=value</c> and <c>key=value</c> pass to the host as
    /// configuration when the key is a host switch or a section path (<c>Herald:ApiKey</c>); <c>--config FILE</c> adds a
    /// JSON file; <c>--help</c> and <c>--version</c> print.
    /// </summary>
    public static CommandLine Parse(string[] args)
    {
        var host = new List<string>();
        string? config = null;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            switch (arg)
            {
                case "-h" or "-?" or "--help":
                    return new(Action.Help, [], null, null);
                case "--version":
                    return new(Action.Version, [], null, null);
            }
            string key;
            string? value;
            if (arg.StartsWith("--", StringComparison.Ordinal) && arg.Length > 2)
            {
                var eq = arg.IndexOf('=', StringComparison.Ordinal);
                key = eq < 0 ? arg[2..] : arg[2..eq];
                value = eq < 0 ? null : arg[(eq + 1)..];
                if (!IsKnown(key))
                {
                    return Fail($"unknown option '--{key}'");
                }
                if (value is null)
                {
                    if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    {
                        return Fail($"option '--{key}' needs a value");
                    }
                    value = args[++i];
                }
            }
            else if (!arg.StartsWith('-') && arg.IndexOf('=', StringComparison.Ordinal) is > 0 and var at)
            {
                key = arg[..at];
                value = arg[(at + 1)..];
            }
            else
            {
                return Fail($"unknown argument '{arg}'");
            }

            if (key.Equals("config", StringComparison.OrdinalIgnoreCase))
            {
                if (!File.Exists(value))
                {
                    return Fail($"configuration file '{value}' not found");
                }
                config = Path.GetFullPath(value);
                continue;
            }
            if (!IsKnown(key))
            {
                return Fail($"unknown option '--{key}'");
            }
            if (key.Equals("urls", StringComparison.OrdinalIgnoreCase) && BadUrl(value) is { } bad)
            {
                return Fail($"--urls: '{bad}' is not an http:// or https:// URL (e.g. http://0.0.0.0:8080)");
            }
            host.Add($"--{key}={value}");
        }
        return new(Action.Run, [.. host], config, null);

        static CommandLine Fail(string why) => new(Action.Fail, [], null, $"herald: {why}; see 'herald --help'.");
    }

    private static bool IsKnown(string key) =>
        key.Equals("config", StringComparison.OrdinalIgnoreCase) || HostKeys.Contains(key) || key.Contains(':', StringComparison.Ordinal);

    private static string? BadUrl(string urls)
    {
        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // Kestrel accepts wildcard hosts (http://*:80, http://+:80) that Uri cannot parse; check them as localhost.
            var probe = url.Replace("://*", "://localhost", StringComparison.Ordinal).Replace("://+", "://localhost", StringComparison.Ordinal);
            if (!Uri.TryCreate(probe, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                return url;
            }
        }
        return urls.Trim().Length == 0 ? urls : null;
    }

    /// <summary>The version, with the commit it was built from when known (<c>0.1.0+3f2a…</c>).</summary>
    public static string Version =>
        typeof(CommandLine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(CommandLine).Assembly.GetName().Version?.ToString()
        ?? "unknown";

    public const string Help = """
        herald — the standalone Herald realtime server (WebSocket, Server-Sent Events, long and short polling).

        Usage: herald [options] [--Section:Key=value ...]

        Options:
          --urls URL[;URL...]         Where to listen (default http://localhost:8080). Also ASPNETCORE_URLS.
                                      Listen on every interface: --urls http://0.0.0.0:8080
          --config FILE               Read configuration from a JSON file ({"Herald":{...}}), over appsettings.json.
          --environment NAME          Development, Production, ... (default Production). Development allows
                                      anonymous clients and has a 'chat' namespace.
          -h, --help                  Print this help.
          --version                   Print the version.

        Any configuration key is an option, --Section:Key=value, or an environment variable, Section__Key=value.
        The most used (all in docs/configuration.md):
          --Herald:ApiKey=KEY                     Bearer key of the server API (/api/*). Unset: one is generated and logged.
          --Herald:AllowAnonymous=true            Accept clients without a token.
          --Herald:Token:Secret=SECRET            HS256 key (32+ characters) that verifies client tokens.
          --Herald:AllowedOrigins:0=https://app.example
                                                  Browser origins allowed (default: same host only).
          --Herald:Namespaces:chat:HistorySize=1000
          --Herald:Namespaces:chat:AllowClientPublish=true
          --Herald:Namespaces:chat:Presence=true  Per-namespace history, client publish and presence.
          --Herald:Redis:Configuration=HOST:6379  Several nodes on one Redis or Valkey.
          --Herald:TrustedProxies:0=127.0.0.1     Honour X-Forwarded-For/-Proto from this proxy (IP or CIDR).
          --Herald:MaxPollWait=00:00:30           Longest long poll.

        Environment: Herald__ApiKey=KEY, Herald__Redis__Configuration=..., ASPNETCORE_URLS=..., ASPNETCORE_ENVIRONMENT=...

        Deployment (systemd, TLS, nginx): docs/deploy.md. Exit codes: 0 stopped cleanly, 1 could not start,
        64 bad command line.
        """;
}
