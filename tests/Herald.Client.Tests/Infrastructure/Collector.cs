using Herald.Protocol;

namespace Herald.Client.Tests.Infrastructure;

/// <summary>Reads a subscription in the background and checks, as it goes, that offsets come in order without gap or duplicate.</summary>
public sealed class Collector
{
    private readonly List<ClientPublication> _received = [];
    private readonly Lock _gate = new();
    private readonly Task _reading;
    private string? _error;

    public Collector(HeraldSubscription subscription, ulong after = 0)
    {
        var expected = after + 1;
        _reading = Task.Run(async () =>
        {
            string? epoch = null;
            await foreach (var publication in subscription)
            {
                lock (_gate)
                {
                    if (epoch is not null && publication.Position.Epoch != epoch)
                    {
                        // A new epoch (after recovered:false) restarts the sequence at whatever the server gives.
                        expected = publication.Offset;
                    }
                    epoch = publication.Position.Epoch;
                    if (publication.Offset != expected && _error is null)
                    {
                        _error = $"expected offset {expected}, got {publication.Offset}";
                    }
                    expected = publication.Offset + 1;
                    _received.Add(publication);
                }
            }
        });
    }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _received.Count;
            }
        }
    }

    public IReadOnlyList<ClientPublication> Received
    {
        get
        {
            lock (_gate)
            {
                return [.. _received];
            }
        }
    }

    public async Task WaitForAsync(int count, TimeSpan timeout)
    {
        await Wait.UntilAsync(() => Count >= count || _error is not null || _reading.IsCompleted, timeout, $"{count} publications (have {Count})");
        AssertInOrder();
        Assert.True(Count >= count, $"the subscription ended after {Count} publications");
    }

    public void AssertInOrder() => Assert.True(_error is null, _error);

    public IReadOnlyList<ulong> Offsets => Received.Select(p => p.Offset).ToList();

    public StreamPosition Last => Received[^1].Position;
}
