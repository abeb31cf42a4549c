using Herald.Protocol;

namespace Herald.Client;

/// <summary>A change of <see cref="HeraldClient.State"/>.</summary>
public sealed class HeraldStateChangedEventArgs : EventArgs
{
    /// <summary>Creates the event.</summary>
    public HeraldStateChangedEventArgs(HeraldConnectionState state, HeraldTransport? transport, string? reason, Exception? exception = null)
    {
        State = state;
        Transport = transport;
        Reason = reason;
        Exception = exception;
    }

    /// <summary>The new state.</summary>
    public HeraldConnectionState State { get; }

    /// <summary>The transport being tried (<see cref="HeraldConnectionState.Connecting"/>), in use (<see cref="HeraldConnectionState.Connected"/>) or just lost.</summary>
    public HeraldTransport? Transport { get; }

    /// <summary>Why the client disconnected (for example <c>"closed 1001: going away"</c>); <see langword="null"/> otherwise.</summary>
    public string? Reason { get; }

    /// <summary>The failure behind a disconnection, when there was one.</summary>
    public Exception? Exception { get; }

    /// <inheritdoc />
    public override string ToString() => State switch
    {
        HeraldConnectionState.Connected => $"Connected({Transport})",
        HeraldConnectionState.Connecting => $"Connecting({Transport})",
        _ => $"Disconnected({Reason})",
    };
}

/// <summary>
/// A subscription came back (after a reconnect or transport switch) but the server could not give back what it
/// missed (<c>recovered: false</c>): the channel changed epoch, or the missed publications left its history window.
/// The subscription continues from <see cref="Position"/>; resync the application's state some other way.
/// </summary>
public sealed class HeraldRecoveryFailedEventArgs : EventArgs
{
    /// <summary>Creates the event.</summary>
    public HeraldRecoveryFailedEventArgs(string channel, StreamPosition previous, StreamPosition position)
    {
        Channel = channel;
        Previous = previous;
        Position = position;
    }

    /// <summary>The channel.</summary>
    public string Channel { get; }

    /// <summary>The last position the client had seen.</summary>
    public StreamPosition Previous { get; }

    /// <summary>The channel's head in its current epoch, from which delivery continues.</summary>
    public StreamPosition Position { get; }

    /// <summary>Whether the channel's log changed generation (for example the server restarted).</summary>
    public bool EpochChanged => !string.Equals(Previous.Epoch, Position.Epoch, StringComparison.Ordinal);
}

/// <summary>
/// A conflated channel's subscription was sent its newest publication in place of older ones it had not received
/// (<see cref="HeraldClient.PublicationsSkipped"/>): offsets <see cref="From"/> to <see cref="To"/>, both included, are
/// skipped by design, and the publication after <see cref="To"/> follows.
/// </summary>
public sealed class HeraldSkippedEventArgs : EventArgs
{
    /// <summary>Creates the event.</summary>
    public HeraldSkippedEventArgs(HeraldSubscription subscription, StreamPosition from, StreamPosition to)
    {
        Subscription = subscription;
        From = from;
        To = to;
    }

    /// <summary>The subscription.</summary>
    public HeraldSubscription Subscription { get; }

    /// <summary>The channel.</summary>
    public string Channel => Subscription.Channel;

    /// <summary>The first offset skipped.</summary>
    public StreamPosition From { get; }

    /// <summary>The last offset skipped; the subscription's cursor is here until the next publication arrives.</summary>
    public StreamPosition To { get; }

    /// <summary>How many publications were skipped.</summary>
    public ulong Count => To.Offset - From.Offset + 1;
}

/// <summary>The server subscribed this client to a channel, or unsubscribed it (<see cref="HeraldClient.ServerSubscribed"/>, <see cref="HeraldClient.ServerUnsubscribed"/>).</summary>
public sealed class HeraldServerSubscriptionEventArgs : EventArgs
{
    /// <summary>Creates the event.</summary>
    public HeraldServerSubscriptionEventArgs(HeraldSubscription subscription, string? reason)
    {
        Subscription = subscription;
        Reason = reason;
    }

    /// <summary>The subscription: new (subscribed), or ended (unsubscribed).</summary>
    public HeraldSubscription Subscription { get; }

    /// <summary>The channel.</summary>
    public string Channel => Subscription.Channel;

    /// <summary>Why the server unsubscribed the client, for logs; <see langword="null"/> on subscribe.</summary>
    public string? Reason { get; }
}
