using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Herald.AspNetCore.Hosting;

/// <summary>
/// Starts the node (and its broker) with the host. When the application begins to stop — before the server stops
/// accepting and waits for requests — the node closes its WebSockets with 1001 and answers parked polls, so clients
/// learn at once to reconnect elsewhere instead of timing out.
/// </summary>
internal sealed class HeraldHostedService(HeraldNode node, IHostApplicationLifetime lifetime) : IHostedService
{
    private CancellationTokenRegistration _stopping;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _stopping = lifetime.ApplicationStopping.Register(node.BeginShutdown);
        return node.StartAsync(cancellationToken).AsTask();
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        node.BeginShutdown();
        await _stopping.DisposeAsync();
    }
}

/// <summary>Proves that <c>AddHerald()</c> ran, so that <c>MapHerald()</c> can fail fast with a clear message.</summary>
internal sealed class HeraldMarker;

/// <summary>Validates the rules of <see cref="HeraldOptions"/> that attributes cannot express.</summary>
internal sealed class HeraldOptionsValidator : IValidateOptions<HeraldOptions>
{
    public ValidateOptionsResult Validate(string? name, HeraldOptions options)
    {
        var problems = options.Validate().ToList();
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
