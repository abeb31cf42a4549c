namespace Herald.Sessions;

/// <summary>
/// A session's subscriptions by channel. Most connections hold one subscription for their whole life, so the first is
/// kept in a field and a dictionary is made only for a second: an idle one-channel subscriber carries no dictionary
/// (with its entries and buckets, about 0.2 KiB). Not thread-safe: the session uses it under its lock.
/// </summary>
internal struct SubscriptionSet
{
    // The only subscription while there is at most one; null once the dictionary holds them.
    private Subscription? _one;
    private Dictionary<string, Subscription>? _many;

    public readonly int Count => _many?.Count ?? (_one is null ? 0 : 1);

    public readonly bool ContainsKey(string channel) => TryGetValue(channel, out _);

    public readonly bool TryGetValue(string channel, out Subscription subscription)
    {
        if (_many is not null)
        {
            return _many.TryGetValue(channel, out subscription!);
        }
        subscription = _one!;
        return _one is not null && string.Equals(_one.Channel, channel, StringComparison.Ordinal);
    }

    /// <summary>Adds <paramref name="subscription"/> under its channel, which must not be in the set.</summary>
    public void Add(Subscription subscription)
    {
        if (_many is null && _one is null)
        {
            _one = subscription;
            return;
        }
        if (_many is null)
        {
            _many = new Dictionary<string, Subscription>(StringComparer.Ordinal) { [_one!.Channel] = _one };
            _one = null;
        }
        _many.Add(subscription.Channel, subscription);
    }

    public bool Remove(string channel, out Subscription subscription)
    {
        if (_many is not null)
        {
            return _many.Remove(channel, out subscription!);
        }
        if (TryGetValue(channel, out subscription))
        {
            _one = null;
            return true;
        }
        return false;
    }

    /// <summary>Empties the set and returns what it held.</summary>
    public Subscription[] TakeAll()
    {
        Subscription[] all = _many is not null ? [.. _many.Values] : _one is not null ? [_one] : [];
        _one = null;
        _many = null;
        return all;
    }
}
