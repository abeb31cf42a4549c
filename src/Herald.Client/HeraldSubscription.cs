using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Herald.Protocol;

namespace Herald.Client;

/// <summary>How to subscribe to a channel.</summary>
public sealed record SubscribeOptions
{
    /// <summary>
    /// Start after this position instead of at the channel's head: the server sends what came after it
    /// (or reports <c>recovered: false</c> through <see cref="HeraldClient.RecoveryFailed"/>).
    /// </summary>
    public StreamPosition? Since { get; init; }

    /// <summary>
    /// When set, publications are handed to this callback, in order, one at a time, instead of to
    /// <see cref="HeraldSubscription.ReadAllAsync"/>. A slow callback slows the connection's reading down
    /// rather than buffering without bound. Exceptions it throws are swallowed so that one bad message cannot
    /// stop delivery of the rest.
    /// </summary>
    public Func<ClientPublication, CancellationToken, ValueTask>? OnPublication { get; init; }
}

/// <summary>
/// A subscription to one channel. Publications arrive in offset order, each exactly once, across reconnects and
/// transport switches. Dispose it (or call <see cref="HeraldClient.UnsubscribeAsync(HeraldSubscription, CancellationToken)"/>) to unsubscribe.
/// </summary>
public sealed class HeraldSubscription : IAsyncDisposable, IAsyncEnumerable<ClientPublication>
{
    private readonly HeraldClient _client;
    private readonly Func<ClientPublication, CancellationToken, ValueTask>? _callback;
    private readonly Channel<ClientPublication> _buffer;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private StreamPosition? _cursor;

    internal HeraldSubscription(HeraldClient client, string channel, SubscribeOptions? options, int capacity, bool serverSide = false)
    {
        _client = client;
        Channel = channel;
        IsServerSide = serverSide;
        _cursor = options?.Since;
        _callback = options?.OnPublication;
        // A full buffer makes the transport wait for the reader: back-pressure instead of unbounded memory or loss.
        _buffer = System.Threading.Channels.Channel.CreateBounded<ClientPublication>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleWriter = true,
            SingleReader = false,
        });
    }

    /// <summary>The channel.</summary>
    public string Channel { get; }

    /// <summary>Whether the server made this subscription (<see cref="HeraldClient.ServerSubscribed"/>) rather than <see cref="HeraldClient.SubscribeAsync(string, SubscribeOptions?, CancellationToken)"/>.</summary>
    public bool IsServerSide { get; }

    /// <summary>
    /// The position of the last publication delivered (or the head the subscription started from);
    /// <see langword="null"/> until the first subscribe reply.
    /// </summary>
    public StreamPosition? Position
    {
        get
        {
            lock (_gate)
            {
                return _cursor;
            }
        }
    }

    /// <summary>Completes when the subscription ends: after unsubscribing, when the client is disposed, or with the server's refusal.</summary>
    public Task Completion => _buffer.Reader.Completion;

    internal Task Ready => _ready.Task;

    /// <summary>Reads the publications in order until the subscription ends.</summary>
    /// <exception cref="InvalidOperationException">The subscription delivers to an <see cref="SubscribeOptions.OnPublication"/> callback.</exception>
    public IAsyncEnumerable<ClientPublication> ReadAllAsync(CancellationToken cancellationToken = default)
    {
        if (_callback is not null)
        {
            throw new InvalidOperationException($"The subscription to {Channel} delivers to its OnPublication callback; it cannot also be enumerated.");
        }
        return ReadCoreAsync(cancellationToken);
    }

    /// <inheritdoc />
    public IAsyncEnumerator<ClientPublication> GetAsyncEnumerator(CancellationToken cancellationToken = default) =>
        ReadAllAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);

    /// <summary>Unsubscribes.</summary>
    public ValueTask DisposeAsync() => _client.UnsubscribeAsync(this);

    private async IAsyncEnumerable<ClientPublication> ReadCoreAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var publication in _buffer.Reader.ReadAllAsync(cancellationToken))
        {
            yield return publication;
        }
    }

    internal void MarkReady() => _ready.TrySetResult();

    /// <summary>The client stopped before this subscription was confirmed: its <c>SubscribeAsync</c> fails with <paramref name="error"/>.</summary>
    internal void FailReady(Exception error) => _ready.TrySetException(error);

    internal void Complete(Exception? error = null)
    {
        if (error is null)
        {
            _ready.TrySetException(new OperationCanceledException($"the subscription to {Channel} ended before it started"));
        }
        else
        {
            _ready.TrySetException(error);
        }
        _buffer.Writer.TryComplete(error);
    }

    /// <summary>
    /// Applies a subscribe reply or a poll answer's entry: reports an impossible recovery, delivers the recovered
    /// publications, and moves the cursor to the entry's position.
    /// </summary>
    internal async ValueTask ApplyAsync(StreamResultMessage result, CancellationToken cancellationToken)
    {
        var epoch = result.Epoch ?? throw new HeraldConnectionException($"the server's answer for {Channel} has no epoch");
        var previous = Position;
        if (result.Recovered == false && previous is { } lost)
        {
            SetCursor(new StreamPosition(result.Offset, epoch));
            _client.OnRecoveryFailed(Channel, lost, new StreamPosition(result.Offset, epoch));
            return;
        }
        if (result.Recovered != true || previous is null || previous.Value.Epoch != epoch)
        {
            // A fresh start (no cursor, or no recovery asked): the head is where delivery begins.
            SetCursor(new StreamPosition(result.Offset, epoch));
            return;
        }
        if (result.Skipped is { } skipped)
        {
            Skip(skipped, epoch);
        }
        if (result.Publications is { } publications)
        {
            foreach (var publication in publications)
            {
                await DeliverAsync(publication, epoch, cancellationToken);
            }
        }
        lock (_gate)
        {
            if (_cursor is { } cursor && cursor.Epoch == epoch && cursor.Offset < result.Offset)
            {
                _cursor = new StreamPosition(result.Offset, epoch);
            }
        }
    }

    /// <summary>
    /// Applies a subscribe push. A subscription the client already follows takes it like a subscribe reply. A new one has
    /// no cursor yet: it starts just before the first recovered publication, so that they are delivered, or at the head.
    /// </summary>
    internal ValueTask ApplyServerSubscribeAsync(StreamResultMessage result, CancellationToken cancellationToken)
    {
        var epoch = result.Epoch ?? throw new HeraldConnectionException($"the server's subscribe push for {Channel} has no epoch");
        if (Position is null)
        {
            if (result.Recovered != true)
            {
                // No cursor given, or the one the application gave is gone: this subscription starts at the head.
                SetCursor(new StreamPosition(result.Offset, epoch));
                return ValueTask.CompletedTask;
            }
            SetCursor(new StreamPosition(result.Publications is [var oldest, ..] ? oldest.Offset - 1 : result.Offset, epoch));
        }
        return ApplyAsync(result, cancellationToken);
    }

    /// <summary>Delivers one publication unless it is a duplicate from a seam; a gap is a broken promise and ends the connection.</summary>
    internal async ValueTask DeliverAsync(PublicationMessage message, string? epoch, CancellationToken cancellationToken)
    {
        var cursor = Position;
        epoch ??= cursor?.Epoch;
        if (cursor is not { } current || epoch is null || current.Epoch != epoch)
        {
            throw new RecoveryGapException($"a publication for {Channel} arrived without a known epoch");
        }
        if (message.Offset <= current.Offset)
        {
            return;
        }
        if (message.Offset != current.Offset + 1)
        {
            throw new RecoveryGapException($"{Channel} skipped from offset {current.Offset} to {message.Offset}");
        }
        var publication = ClientPublication.FromWire(Channel, new StreamPosition(message.Offset, epoch), message);
        if (_callback is not null)
        {
            try
            {
                await _callback(publication, cancellationToken);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                // The callback's failure is the application's business; the log goes on.
            }
        }
        else
        {
            await _buffer.Writer.WriteAsync(publication, cancellationToken);
        }
        // The cursor moves only once the publication is handed over, so a connection cut mid-write recovers it.
        SetCursor(publication.Position);
    }

    /// <summary>
    /// Applies a conflated channel's skip notice: offsets <c>from</c> to <c>to</c> were replaced by a newer publication, so
    /// the cursor moves to <c>to</c> without treating them as a gap, and the application is told. A notice that starts past
    /// the cursor's next offset is a gap like any other.
    /// </summary>
    internal void Skip(SkippedMessage skipped, string? epoch)
    {
        StreamPosition previous;
        lock (_gate)
        {
            if (_cursor is not { } current || (epoch is not null && current.Epoch != epoch))
            {
                throw new RecoveryGapException($"a skip notice for {Channel} arrived without a known epoch");
            }
            if (skipped.To <= current.Offset)
            {
                return; // already past it (a seam)
            }
            if (skipped.From > current.Offset + 1)
            {
                throw new RecoveryGapException($"{Channel} skipped from offset {current.Offset} to {skipped.From}");
            }
            previous = current;
            _cursor = current with { Offset = skipped.To };
        }
        _client.OnPublicationsSkipped(this, new StreamPosition(previous.Offset + 1, previous.Epoch), new StreamPosition(skipped.To, previous.Epoch));
    }

    private void SetCursor(StreamPosition position)
    {
        lock (_gate)
        {
            _cursor = position;
        }
    }
}

/// <summary>A subscription saw an offset skip: the connection is dropped and the subscription recovers with <c>since</c>.</summary>
internal sealed class RecoveryGapException(string message) : Exception(message);
