using Herald.Brokers;
using Herald.Tests.Conformance;

namespace Herald.Core.Tests;

/// <summary>The broker contract, checked on in-memory nodes: N <see cref="MemoryBroker"/>s over one <see cref="MemoryLogStore"/>.</summary>
public sealed class MemoryBrokerConformanceTests : BrokerConformanceTests
{
    private readonly List<MemoryLogStore> _stores = [];

    protected override Task<IBroker[]> CreateNodesAsync(int count, TimeProvider? time)
    {
        var store = new MemoryLogStore(time);
        _stores.Add(store);
        return Task.FromResult(Enumerable.Range(0, count).Select(_ => (IBroker)new MemoryBroker(store)).ToArray());
    }

    protected override ValueTask DisposeBackendAsync()
    {
        // The nodes share the store and so do not own it; it is freed after them.
        foreach (var store in _stores)
        {
            store.Dispose();
        }
        return ValueTask.CompletedTask;
    }
}
