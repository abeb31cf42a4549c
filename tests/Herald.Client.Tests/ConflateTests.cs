using System.Collections.Concurrent;
using Herald.Client.Tests.Infrastructure;

namespace Herald.Client.Tests;

/// <summary>
/// Latest-value channels seen from the .NET client: a subscription whose application falls behind is told which offsets
/// were skipped (<see cref="HeraldClient.PublicationsSkipped"/>), is not reconnected or told of a lost recovery, and its
/// cursor lands on the newest offset.
/// </summary>
public sealed class ConflateTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly byte[] Payload = System.Text.Encoding.UTF8.GetBytes("\"" + new string('x', 2000) + "\"");

    [Theory]
    [InlineData(HeraldTransport.WebSocket, HeraldProtocol.Json)]
    [InlineData(HeraldTransport.WebSocket, HeraldProtocol.MsgPack)]
    [InlineData(HeraldTransport.Sse, HeraldProtocol.Json)]
    [InlineData(HeraldTransport.LongPoll, HeraldProtocol.Json)]
    public async Task SubscriptionThatFallsBehind_IsToldWhatWasSkipped_AndItsCursorLandsOnTheNewest(HeraldTransport transport, HeraldProtocol protocol)
    {
        await using var server = await TestServer.StartAsync(o =>
        {
            o.MaxQueuedMessages = 1000;
            o.MaxQueuedBytes = 1024 * 1024;
            o.Namespaces["latest"] = new NamespaceOptions { HistorySize = 10, Conflate = true };
        });
        const string Channel = "latest:client";
        await using var client = new HeraldClient(Clients.Options(server, transport) with { Protocol = protocol });
        var states = new StateLog(client);
        // Publications and skip notices, in the order the application saw them (both come from the connection loop).
        var seen = new ConcurrentQueue<(ulong From, ulong To, bool Skip)>();
        client.PublicationsSkipped += (_, e) => seen.Enqueue((e.From.Offset, e.To.Offset, true));
        var recoveryFailed = 0;
        client.RecoveryFailed += (_, _) => Interlocked.Increment(ref recoveryFailed);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await client.ConnectAsync();
        var subscription = await client.SubscribeAsync(Channel, new SubscribeOptions
        {
            OnPublication = async (publication, cancellationToken) =>
            {
                seen.Enqueue((publication.Position.Offset, publication.Position.Offset, false));
                if (publication.Position.Offset == 1)
                {
                    await gate.Task.WaitAsync(cancellationToken); // the application stalls: the client stops reading
                }
            },
        });
        var ns = server.Node.Options.FindNamespace("latest")!;
        ulong published = 0;
        async Task PublishAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                published = (await server.Node.PublishAsync(Channel, ns, Payload, null)).Offset;
            }
        }
        await PublishAsync(1);
        await Wait.UntilAsync(() => !seen.IsEmpty, Timeout, "the first publication reached the application");

        if (transport == HeraldTransport.LongPoll)
        {
            await PublishAsync(500); // the poll loop is held by the application: the next poll is far behind
        }
        else
        {
            // Until the kernel's buffers are full and the server-side queue is past half, then some more that conflate.
            var queue = server.Node.SubscribersOf(Channel).Single().Session.Outbound;
            while (!queue.IsPastHalf)
            {
                Assert.True(published < 100_000, "the server-side queue never filled");
                await PublishAsync(100);
            }
            await PublishAsync(200);
        }
        gate.SetResult();
        await Wait.UntilAsync(() => subscription.Position?.Offset == published, Timeout, $"the cursor lands on the newest offset {published}");

        var next = 1UL;
        var skips = 0;
        foreach (var (from, to, skip) in seen)
        {
            Assert.Equal(next, from);
            next = to + 1;
            skips += skip ? 1 : 0;
        }
        Assert.Equal(published + 1, next);
        Assert.False(seen.Last().Skip); // the newest publication itself is delivered
        Assert.True(skips > 0, "at least one skip notice");
        Assert.Equal(0, recoveryFailed);
        Assert.DoesNotContain(states.Events, e => e.State == HeraldConnectionState.Disconnected);
        Assert.Equal(0, server.Node.Metrics.SlowConsumerCloses);
    }
}
