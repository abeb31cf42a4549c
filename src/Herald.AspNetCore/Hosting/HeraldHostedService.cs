using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Herald.AspNetCore.Hosting;

/// <summary>Starts the node (and its broker) with the host, and disposes it at shutdown.</summary>
internal sealed class HeraldHostedService(HeraldNode node) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => node.StartAsync(cancellationToken).AsTask();

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
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
