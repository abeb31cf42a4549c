using System.Collections.Concurrent;

namespace Herald.Client.Tests.Infrastructure;

/// <summary>Client options tuned for tests: fast polling and fast reconnects, so no test waits on a default delay.</summary>
public static class Clients
{
    public static HeraldClientOptions Options(TestServer server, HeraldTransport? forced = null) => new()
    {
        BaseUri = server.BaseUri,
        ForcedTransport = forced,
        LongPollWait = TimeSpan.FromSeconds(5),
        ShortPollInterval = TimeSpan.FromMilliseconds(20),
        ReconnectMinDelay = TimeSpan.FromMilliseconds(20),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(300),
        ConnectTimeout = TimeSpan.FromSeconds(5),
        CommandTimeout = TimeSpan.FromSeconds(10),
    };

    /// <summary>A JSON value that outlives its document, e.g. for <see cref="HeraldClientOptions.Info"/>.</summary>
    public static System.Text.Json.JsonElement Json(string json)
    {
        using var document = System.Text.Json.JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }
}

/// <summary>Records every state change of a client, for assertions on the sequence.</summary>
public sealed class StateLog
{
    private readonly ConcurrentQueue<HeraldStateChangedEventArgs> _events = new();

    public StateLog(HeraldClient client) => client.StateChanged += (_, e) => _events.Enqueue(e);

    public IReadOnlyList<HeraldStateChangedEventArgs> Events => [.. _events];

    public override string ToString() => string.Join(" → ", _events);
}
