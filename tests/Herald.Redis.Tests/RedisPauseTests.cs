using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Herald.Redis.Tests;

/// <summary>
/// Redis stops answering writes for a while (<c>CLIENT PAUSE … WRITE</c>, as during a failover) while publishers run
/// through two nodes on it. Each publish is either accepted, and then delivered once, in order, to a WebSocket
/// subscriber on the other node, or refused with <c>unavailable</c> (503); nothing is accepted and lost, and everything
/// works again after the pause. The test has a redis-server of its own, so pausing it disturbs no other test.
/// </summary>
// In the redis collection although it has a server of its own: run alone, its load does not disturb the
// real-time TTL tests of the others.
[Collection(RedisCollection.Name)]
public sealed class RedisPauseTests(ITestOutputHelper output)
{
    private const string Channel = "fault:pause";
    private const int PublishersPerNode = 2;

    /// <summary>
    /// Longer than the client's timeout (asyncTimeout=1000, checked about once a second), so publishes made during the
    /// pause time out rather than wait it through.
    /// </summary>
    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(3500);

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private static Task<TestServer> StartNodeAsync(RedisServer redis, string prefix) =>
        TestServer.StartAsync(
            configure: o => o.Namespaces["fault"] = new NamespaceOptions { HistorySize = 100_000, HistoryTtl = TimeSpan.FromMinutes(10) },
            configureServices: services => services.AddHeraldRedis(o =>
            {
                o.Configuration = redis.ShortTimeoutConfiguration; // asyncTimeout=1000
                o.Prefix = prefix;
            }));

    [Fact]
    public async Task PublishesWhileRedisIsPaused_AreAcceptedAndDeliveredOnce_OrRefusedUnavailable_NeverAcceptedAndLost()
    {
        using var redis = new RedisServer(persistent: false);
        await redis.StartAsync();
        var prefix = "pause-" + Guid.NewGuid().ToString("N")[..12];
        await using var a = await StartNodeAsync(redis, prefix);
        await using var b = await StartNodeAsync(redis, prefix);

        await using var subscriber = await a.ConnectAsync();
        var subscribed = (await subscriber.CommandAsync($$"""{"op":"subscribe","channel":"{{Channel}}"}""")).GetProperty("result");
        Assert.Equal(0UL, subscribed.GetProperty("offset").GetUInt64());

        // Publishers on both nodes, each publishing (node, publisher, sequence) in a loop until told to stop.
        var accepted = new ConcurrentDictionary<ulong, string>();
        var acceptedPerNode = new int[2];
        var refusedPerNode = new int[2];
        var unexpected = new ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource();
        var publishers = new List<Task>();
        foreach (var (node, index) in new[] { (a, 0), (b, 1) })
        {
            for (var p = 0; p < PublishersPerNode; p++)
            {
                var tag = $"{index}-{p}";
                publishers.Add(Task.Run(async () =>
                {
                    for (var n = 0; !stop.IsCancellationRequested; n++)
                    {
                        var data = $$"""{"tag":"{{tag}}","n":{{n}}}""";
                        using var response = await node.Api.PostAsync("/api/publish", new StringContent($$"""{"channel":"{{Channel}}","data":{{data}}}"""));
                        var body = await response.Content.ReadAsStringAsync();
                        using var doc = JsonDocument.Parse(body);
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            var offset = doc.RootElement.GetProperty("offset").GetUInt64();
                            if (!accepted.TryAdd(offset, $"{tag}/{n}"))
                            {
                                unexpected.Enqueue($"offset {offset} given twice ({accepted[offset]} and {tag}/{n})");
                            }
                            Interlocked.Increment(ref acceptedPerNode[index]);
                        }
                        else if (response.StatusCode == HttpStatusCode.ServiceUnavailable
                            && doc.RootElement.GetProperty("error").GetProperty("code").GetString() == ErrorCodes.Unavailable)
                        {
                            Interlocked.Increment(ref refusedPerNode[index]);
                        }
                        else
                        {
                            unexpected.Enqueue($"node {index} answered {(int)response.StatusCode}: {body}");
                        }
                    }
                }));
            }
        }

        try
        {
            await Wait.UntilAsync(() => Volatile.Read(ref acceptedPerNode[0]) >= 10 && Volatile.Read(ref acceptedPerNode[1]) >= 10, Deadline, "publishes accepted on both nodes before the pause");

            await using (var admin = await ConnectionMultiplexer.ConnectAsync(redis.ShortTimeoutConfiguration + ",allowAdmin=true"))
            {
                await admin.GetDatabase().ExecuteAsync("CLIENT", "PAUSE", ((long)Pause.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture), "WRITE");
            }
            var paused = Stopwatch.StartNew();
            await Wait.UntilAsync(() => Volatile.Read(ref refusedPerNode[0]) + Volatile.Read(ref refusedPerNode[1]) > 0, Deadline, "a publish refused with 503 unavailable during the pause");

            // After the pause, each node accepts publishes again. (Its publications queued at Redis during the pause,
            // timed out for the client, then ran when the pause ended: they went first on that node's connection.)
            var before = new[] { Volatile.Read(ref acceptedPerNode[0]), Volatile.Read(ref acceptedPerNode[1]) };
            await Wait.UntilAsync(() => paused.Elapsed > Pause
                && Volatile.Read(ref acceptedPerNode[0]) >= before[0] + 10 && Volatile.Read(ref acceptedPerNode[1]) >= before[1] + 10,
                Deadline, "publishes accepted again on both nodes after the pause");
        }
        finally
        {
            await stop.CancelAsync();
            await Wait.ForAsync(Task.WhenAll(publishers).ContinueWith(_ => true, TaskScheduler.Default), Deadline, "the publishers to stop");
        }
        await Task.WhenAll(publishers); // rethrows a publisher's failure
        Assert.True(unexpected.IsEmpty, string.Join("\n", unexpected));

        // The log's head: every accepted offset is at or below it.
        using var history = JsonDocument.Parse(await b.Api.GetStringAsync($"/api/channels/{Channel}/history?limit=1"));
        var head = history.RootElement.GetProperty("offset").GetUInt64();
        Assert.True(accepted.Keys.Max() <= head, $"accepted offset {accepted.Keys.Max()} above the head {head}");

        // The subscriber on A got 1..head, each once and in order, and each accepted offset with the data accepted.
        for (var expected = 1UL; expected <= head; expected++)
        {
            JsonElement push;
            try
            {
                push = (await subscriber.NextPushAsync(TimeSpan.FromSeconds(10))).GetProperty("push").GetProperty("pub");
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"the subscriber on A got offsets up to {expected - 1} of {head}, then nothing for 10 s (socket {subscriber.CloseStatus?.ToString() ?? "open"})");
                throw;
            }
            Assert.Equal(expected, push.GetProperty("offset").GetUInt64());
            if (accepted.TryGetValue(expected, out var what))
            {
                var data = push.GetProperty("data");
                Assert.Equal(what, $"{data.GetProperty("tag").GetString()}/{data.GetProperty("n").GetInt32()}");
            }
        }
        Assert.False(subscriber.TryReadPush(out var extra), $"a push beyond the head {head}: {extra}");
        // Offsets nobody was told about: publishes refused for a timeout that Redis ran when the pause ended.
        output.WriteLine($"head {head}; accepted {accepted.Count} (A {acceptedPerNode[0]}, B {acceptedPerNode[1]}); refused {refusedPerNode[0] + refusedPerNode[1]}; refused but applied {head - (ulong)accepted.Count}");
        Assert.Null(subscriber.CloseStatus);
    }
}
