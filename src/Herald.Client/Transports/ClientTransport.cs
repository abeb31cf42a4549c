using System.Text.Json;
using Herald.Protocol;

namespace Herald.Client.Transports;

/// <summary>How and why a connection ended.</summary>
/// <param name="Reason">For humans, e.g. <c>"closed 1001: going away"</c>.</param>
/// <param name="Exception">The failure, if any.</param>
/// <param name="Fatal">Whether reconnecting cannot help (the credentials were refused).</param>
internal sealed record TransportEnd(string Reason, Exception? Exception = null, bool Fatal = false);

/// <summary>
/// One connection over one transport. The client opens it, runs it until it ends, and disposes it; a transport is
/// never reused. While it runs it is the only writer to the subscriptions, which keeps delivery in order.
/// </summary>
internal abstract class ClientTransport : IAsyncDisposable
{
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private string? _stopReason;

    protected ClientTransport(HeraldClient client)
    {
        Client = client;
        BaseUri = client.NextBaseUri();
    }

    protected HeraldClient Client { get; }

    /// <summary>The node this connection talks to, for all its life.</summary>
    public Uri BaseUri { get; }

    public abstract HeraldTransport Kind { get; }

    /// <summary>Completes when the connection has ended.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Cancelled when the connection must end (switch, dispose, failure).</summary>
    protected CancellationToken StopToken => _stop.Token;

    protected string StopReason => _stopReason ?? "stopped";

    /// <summary>Establishes the connection (handshake, <c>connect</c>, or a first round trip for polling).</summary>
    public abstract Task OpenAsync(CancellationToken cancellationToken);

    /// <summary>Receives until the connection ends, (re)subscribing every subscription from its cursor first.</summary>
    public async Task<TransportEnd> RunAsync(CancellationToken cancellationToken)
    {
        using var registration = cancellationToken.Register(static state => ((ClientTransport)state!).Stop("client disposed"), this);
        try
        {
            return await RunCoreAsync();
        }
        finally
        {
            _completion.TrySetResult();
        }
    }

    protected abstract Task<TransportEnd> RunCoreAsync();

    /// <summary>Asks the connection to end; <see cref="RunAsync"/> then returns with <paramref name="reason"/>.</summary>
    public void Stop(string reason)
    {
        Interlocked.CompareExchange(ref _stopReason, reason, null);
        try
        {
            _stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Test hook: breaks the connection abruptly, the way a network failure would (an aborted socket, a cancelled
    /// request), without the orderly <see cref="Stop"/>; the client then reconnects and recovers as after any failure.
    /// </summary>
    internal abstract void Break();

    /// <summary>A subscription was added while this connection runs.</summary>
    public abstract void OnSubscribed(HeraldSubscription subscription);

    /// <summary>A subscription was removed while this connection runs.</summary>
    public abstract ValueTask OnUnsubscribedAsync(HeraldSubscription subscription, CancellationToken cancellationToken);

    /// <summary>Sends a command and returns its <c>result</c>; an error reply throws <see cref="HeraldException"/>.</summary>
    public abstract Task<JsonElement> CommandAsync(Command command, CancellationToken cancellationToken);

    public virtual ValueTask DisposeAsync()
    {
        Stop("disposed");
        _completion.TrySetResult();
        _stop.Dispose();
        return ValueTask.CompletedTask;
    }

    protected static HeraldException ToException(ErrorBody error) =>
        new(error.Code ?? "unknown", error.Message ?? "the server refused the command");
}
