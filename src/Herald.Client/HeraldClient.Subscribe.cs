using Herald.Client.Transports;

namespace Herald.Client;

public sealed partial class HeraldClient
{
    /// <summary>
    /// Subscribes to <paramref name="channel"/> and returns once the server confirmed it. From then on the
    /// subscription survives reconnects and transport switches, resuming from its cursor each time.
    /// </summary>
    /// <param name="channel">The channel, <c>namespace:name</c> or a bare name.</param>
    /// <param name="options">Where to start and whether to deliver to a callback; <see langword="null"/> for the head and an enumerable.</param>
    /// <param name="cancellationToken">Cancels the wait; the subscription is then withdrawn.</param>
    /// <exception cref="InvalidOperationException">The client already has a subscription to the channel.</exception>
    /// <exception cref="HeraldConnectionException">The client stopped before the subscription was confirmed: no transport could connect in its first round.</exception>
    /// <exception cref="OperationCanceledException">
    /// <paramref name="cancellationToken"/> was cancelled, or the server did not confirm the subscription within
    /// <see cref="HeraldClientOptions.CommandTimeout"/> plus <see cref="HeraldClientOptions.ConnectTimeout"/> (say, the
    /// client is not connected); the subscription is then withdrawn.
    /// </exception>
    /// <exception cref="HeraldException">
    /// The server refused the subscription (<c>invalid_channel</c>, <c>permission_denied</c>, …), or the client stopped
    /// on a fatal refusal before it was confirmed. A refusal that means "not now" (<c>rate_limited</c>,
    /// <c>internal</c>) is not thrown: the subscribe is asked again after a backoff.
    /// </exception>
    public async ValueTask<HeraldSubscription> SubscribeAsync(string channel, SubscribeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        ThrowIfDisposed();
        var subscription = new HeraldSubscription(this, channel, options, Options.SubscriptionBufferCapacity);
        if (!_subscriptions.TryAdd(channel, subscription))
        {
            throw new InvalidOperationException($"The client is already subscribed to {channel}; reuse that subscription.");
        }
        ClientTransport? current;
        lock (_gate)
        {
            current = _current;
        }
        current?.OnSubscribed(subscription);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            // Not connected right now: the subscription waits for the next connection, but not forever.
            timeout.CancelAfter(Options.CommandTimeout + Options.ConnectTimeout);
            await subscription.Ready.WaitAsync(timeout.Token);
        }
        catch (Exception)
        {
            await UnsubscribeAsync(subscription, CancellationToken.None);
            throw;
        }
        return subscription;
    }

    /// <summary>Subscribes, handing every publication to <paramref name="onPublication"/> in order.</summary>
    /// <inheritdoc cref="SubscribeAsync(string, SubscribeOptions?, CancellationToken)"/>
    public ValueTask<HeraldSubscription> SubscribeAsync(string channel, Func<ClientPublication, CancellationToken, ValueTask> onPublication, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(onPublication);
        return SubscribeAsync(channel, new SubscribeOptions { OnPublication = onPublication }, cancellationToken);
    }

    /// <summary>Unsubscribes; the subscription's enumerable then ends.</summary>
    public async ValueTask UnsubscribeAsync(HeraldSubscription subscription, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        if (!_subscriptions.TryRemove(new(subscription.Channel, subscription)))
        {
            subscription.Complete();
            return;
        }
        subscription.Complete();
        ClientTransport? current;
        lock (_gate)
        {
            current = _current;
        }
        if (current is null)
        {
            return;
        }
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(Options.CommandTimeout);
            await current.OnUnsubscribedAsync(subscription, timeout.Token);
        }
        catch (HeraldConnectionException)
        {
            // The connection is gone, and with it the server's subscription.
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Unsubscribes from <paramref name="channel"/>, if subscribed.</summary>
    public ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        return _subscriptions.TryGetValue(channel, out var subscription)
            ? UnsubscribeAsync(subscription, cancellationToken)
            : ValueTask.CompletedTask;
    }

    /// <summary>The server refused a subscription: it ends with that error.</summary>
    internal void OnSubscriptionRefused(HeraldSubscription subscription, HeraldException error)
    {
        _subscriptions.TryRemove(new(subscription.Channel, subscription));
        subscription.Complete(error);
    }

    /// <summary>
    /// Raised when the server subscribed this client to a channel (the application called <c>IHeraldServer.SubscribeAsync</c>
    /// or <c>POST /api/subscribe</c> for this client's user), with the new <see cref="HeraldSubscription"/>: read it (or
    /// dispose it to unsubscribe) like one of the client's own. It is resumed from its cursor after reconnects like them,
    /// with a client <c>subscribe</c>, which the server allows under the normal rules (grant the channel to the user).
    /// </summary>
    /// <remarks>Raised on the client's read loop before the subscription's first publication; handlers must not block.</remarks>
    public event EventHandler<HeraldServerSubscriptionEventArgs>? ServerSubscribed;

    /// <summary>
    /// Raised when the server unsubscribed this client from a channel; the subscription has ended (its enumerable
    /// completes) and is not resumed after reconnects.
    /// </summary>
    public event EventHandler<HeraldServerSubscriptionEventArgs>? ServerUnsubscribed;

    /// <summary>
    /// A subscribe push: the server subscribed this connection. Makes (or reuses) the channel's subscription, tells the
    /// application, then delivers what the push recovered and starts the cursor at its position.
    /// </summary>
    internal async ValueTask<HeraldSubscription> OnServerSubscribedAsync(string channel, Protocol.StreamResultMessage result, CancellationToken cancellationToken)
    {
        var created = new HeraldSubscription(this, channel, null, Options.SubscriptionBufferCapacity, serverSide: true);
        var subscription = _subscriptions.GetOrAdd(channel, created);
        if (ReferenceEquals(subscription, created))
        {
            Raise(ServerSubscribed, new HeraldServerSubscriptionEventArgs(subscription, null));
        }
        await subscription.ApplyServerSubscribeAsync(result, cancellationToken);
        subscription.MarkReady();
        return subscription;
    }

    /// <summary>An unsubscribe push: the server ended this connection's subscription to <paramref name="channel"/>.</summary>
    internal void OnServerUnsubscribed(string channel, string? reason)
    {
        if (_subscriptions.TryRemove(channel, out var subscription))
        {
            subscription.Complete();
            Raise(ServerUnsubscribed, new HeraldServerSubscriptionEventArgs(subscription, reason));
        }
    }

    private void Raise(EventHandler<HeraldServerSubscriptionEventArgs>? handler, HeraldServerSubscriptionEventArgs args)
    {
        try
        {
            handler?.Invoke(this, args);
        }
        catch (Exception)
        {
            // A faulty handler must not stop the connection loop.
        }
    }
}
