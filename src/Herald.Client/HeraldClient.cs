using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using Herald.Client.Transports;
using Herald.Protocol;

namespace Herald.Client;

/// <summary>
/// A connection to a Herald server over WebSocket, long polling or short polling, with automatic fallback,
/// reconnection (exponential backoff with jitter) and gap-free recovery of every subscription.
/// </summary>
/// <remarks>
/// Each subscription keeps a cursor (offset and epoch of the last publication it delivered). Every reconnect and
/// every transport switch resumes from it with <c>since</c>, and duplicates at the seam are dropped by offset, so
/// a subscriber sees each offset once and in order. When the server cannot give back what was missed, the client
/// says so through <see cref="RecoveryFailed"/>.
/// </remarks>
public sealed partial class HeraldClient : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, HeraldSubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly HttpClient _http;
    private HeraldConnectionState _state;
    private HeraldTransport? _transport;
    private int _disposed;
    private int _attempts;

    /// <summary>Creates a client; nothing connects until <see cref="ConnectAsync"/>.</summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public HeraldClient(HeraldClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        // A copy of our own: the caller's element may belong to a document disposed later, and null means none.
        Info = options.Info is { ValueKind: JsonValueKind.Object } info ? info.Clone() : null;
        _http = new HttpClient(new SocketsHttpHandler
        {
            // Pooled connections to a node that went away must not outlive the reconnect that replaces them.
            PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            ConnectTimeout = options.ConnectTimeout,
        })
        {
            // Long polls are held by the server; each request carries its own deadline instead.
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>The options the client was created with.</summary>
    public HeraldClientOptions Options { get; }

    /// <summary>
    /// This client's id for presence while it polls: 32 random hex digits, the same for every poll (long and short)
    /// over the client's lifetime, so the server lists a polling client in a channel's presence under it until shortly
    /// after its last poll. On a WebSocket the server assigns the connection an id of its own, which presence lists
    /// instead; this id goes with <c>connect</c> as <c>client</c>, so a move from polling ends the poll entry rather
    /// than listing the client twice.
    /// </summary>
    public string ClientId { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    /// <summary>The connection state.</summary>
    public HeraldConnectionState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    /// <summary>The transport in use while <see cref="State"/> is <see cref="HeraldConnectionState.Connected"/>.</summary>
    public HeraldTransport? Transport
    {
        get
        {
            lock (_gate)
            {
                return _state == HeraldConnectionState.Connected ? _transport : null;
            }
        }
    }

    /// <summary>Raised on every change of <see cref="State"/>: Connecting, Connected(transport), Disconnected(reason).</summary>
    /// <remarks>Raised on the client's connection loop; handlers must not block.</remarks>
    public event EventHandler<HeraldStateChangedEventArgs>? StateChanged;

    /// <summary>Raised when a subscription came back with <c>recovered: false</c>: publications were missed and cannot be given back.</summary>
    /// <remarks>Raised on the client's connection loop, before the subscription delivers anything newer.</remarks>
    public event EventHandler<HeraldRecoveryFailedEventArgs>? RecoveryFailed;

    /// <summary>
    /// Raised when a subscription to a conflated channel (a namespace with <c>Conflate</c>) fell behind and the server sent
    /// the channel's newest publication in place of older ones: the skipped offsets are not a loss to recover, and the
    /// subscription's <see cref="HeraldSubscription.Position"/> has moved past them.
    /// </summary>
    /// <remarks>Raised on the client's connection loop, before the newest publication is delivered; handlers must not block.</remarks>
    public event EventHandler<HeraldSkippedEventArgs>? PublicationsSkipped;

    internal HttpClient Http => _http;

    /// <summary>The client's copy of <see cref="HeraldClientOptions.Info"/>, sent with <c>connect</c> and every poll.</summary>
    internal JsonElement? Info { get; }

    internal ICollection<HeraldSubscription> Subscriptions => _subscriptions.Values;

    internal bool TryGetSubscription(string channel, out HeraldSubscription subscription) =>
        _subscriptions.TryGetValue(channel, out subscription!);

    internal ValueTask<string?> GetTokenAsync(CancellationToken cancellationToken) =>
        Options.TokenProvider is { } provider ? provider(cancellationToken) : ValueTask.FromResult(Options.Token);

    /// <summary>The base address for the next connection attempt: <see cref="HeraldClientOptions.BaseUris"/> in turn, else <see cref="HeraldClientOptions.BaseUri"/>.</summary>
    internal Uri NextBaseUri()
    {
        var all = Options.BaseUris;
        if (all.Count == 0)
        {
            return Options.BaseUri;
        }
        var turn = (uint)Interlocked.Increment(ref _attempts) - 1;
        return all[(int)(turn % (uint)all.Count)];
    }

    internal static Uri ResolveHttp(Uri baseUri, string path) => new(WithTrailingSlash(baseUri), path);

    internal Uri ResolveWebSocket(Uri baseUri)
    {
        var builder = new UriBuilder(ResolveHttp(baseUri, Options.WebSocketPath));
        builder.Scheme = builder.Scheme == Uri.UriSchemeHttps ? "wss" : "ws";
        return builder.Uri;
    }

    internal void OnPublicationsSkipped(HeraldSubscription subscription, StreamPosition from, StreamPosition to)
    {
        try
        {
            PublicationsSkipped?.Invoke(this, new HeraldSkippedEventArgs(subscription, from, to));
        }
        catch (Exception)
        {
            // A faulty handler must not stop the connection loop.
        }
    }

    internal void OnRecoveryFailed(string channel, StreamPosition previous, StreamPosition position)
    {
        try
        {
            RecoveryFailed?.Invoke(this, new HeraldRecoveryFailedEventArgs(channel, previous, position));
        }
        catch (Exception)
        {
            // A faulty handler must not stop the connection loop.
        }
    }

    private void SetState(HeraldConnectionState state, HeraldTransport? transport, string? reason = null, Exception? exception = null)
    {
        lock (_gate)
        {
            _state = state;
            _transport = transport;
        }
        try
        {
            StateChanged?.Invoke(this, new HeraldStateChangedEventArgs(state, transport, reason, exception));
        }
        catch (Exception)
        {
            // A faulty handler must not stop the connection loop.
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    private static Uri WithTrailingSlash(Uri uri) =>
        uri.AbsolutePath.EndsWith('/') ? uri : new Uri(uri.AbsoluteUri + "/");

    /// <summary>Disconnects, ends every subscription and releases the client's resources.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await StopLoopAsync();
        foreach (var subscription in _subscriptions.Values)
        {
            subscription.Complete();
        }
        _subscriptions.Clear();
        _http.Dispose();
    }

    private ClientTransport CreateTransport(HeraldTransport kind) => kind switch
    {
        HeraldTransport.WebSocket => new WebSocketTransport(this),
        HeraldTransport.LongPoll => new PollingTransport(this, longPoll: true),
        HeraldTransport.ShortPoll => new PollingTransport(this, longPoll: false),
        HeraldTransport.Sse => new SseTransport(this),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown transport"),
    };
}
