using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>
/// Follows one channel by polling, as a stateless client does: every request carries the cursor of the previous
/// answer, and may go to any node. Checks each answer as it comes (same epoch, <c>recovered:true</c>, offsets following
/// the cursor with no gap and no duplicate, the answer's offset equal to the last one included).
/// </summary>
public sealed class PollFollower(string channel)
{
    private readonly List<JsonElement> _data = [];
    private long _offset;
    private int _polls;
    private int _ranOutOfWait;

    public string Channel { get; } = channel;

    /// <summary>The epoch learned from the first poll.</summary>
    public string? Epoch { get; private set; }

    /// <summary>The cursor: the last offset seen. Safe to read from other threads.</summary>
    public ulong Offset => (ulong)Interlocked.Read(ref _offset);

    /// <summary>The <c>data</c> of every publication seen, in the order received (offset order).</summary>
    public IReadOnlyList<JsonElement> Data => _data;

    /// <summary>Polls sent.</summary>
    public int Polls => Volatile.Read(ref _polls);

    /// <summary>
    /// Long polls answered no sooner than their wait: held until the deadline. A poll whose wake-up was missed is answered
    /// then (with what it missed), so this counts missed wake-ups when publications were sure to come.
    /// </summary>
    public int RanOutOfWait => Volatile.Read(ref _ranOutOfWait);

    /// <summary>
    /// Sends one poll to <paramref name="node"/> (with the cursor, once the first poll has told it) and checks its answer.
    /// Fails the test when no answer comes within <paramref name="wait"/> plus 10 s.
    /// </summary>
    public async Task<JsonElement> PollAsync(TestServer node, double wait)
    {
        var poll = Interlocked.Increment(ref _polls);
        var url = Epoch is null
            ? $"/poll?channel={Channel}"
            : $"/poll?channel={Channel}&offset={Offset}&epoch={Epoch}&wait={wait.ToString(CultureInfo.InvariantCulture)}";
        var limit = TimeSpan.FromSeconds(wait + 10);
        using var timeout = new CancellationTokenSource(limit);
        string text;
        HttpStatusCode status;
        var sent = Stopwatch.GetTimestamp();
        try
        {
            using var response = await node.Http.GetAsync(url, timeout.Token);
            status = response.StatusCode;
            text = await response.Content.ReadAsStringAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            Assert.Fail($"poll #{poll} to node {node.Node.NodeId} ({url}) got no answer within {limit.TotalSeconds:0.#} s");
            throw;
        }
        if (Epoch is not null && wait > 0 && Stopwatch.GetElapsedTime(sent) >= TimeSpan.FromSeconds(wait))
        {
            Interlocked.Increment(ref _ranOutOfWait);
        }
        Assert.True(status == HttpStatusCode.OK, $"poll #{poll} to node {node.Node.NodeId} ({url}) answered {(int)status}: {text}");
        var answer = JsonDocument.Parse(text).RootElement.GetProperty("channels").GetProperty(Channel).Clone();
        var epoch = answer.GetProperty("epoch").GetString();
        var publications = answer.GetProperty("publications");
        if (Epoch is null)
        {
            Assert.False(answer.TryGetProperty("recovered", out _), $"a first poll has no 'recovered': {text}");
            Assert.Empty(publications.EnumerateArray());
            Epoch = epoch;
            Interlocked.Exchange(ref _offset, (long)answer.GetProperty("offset").GetUInt64());
            return answer;
        }
        Assert.True(epoch == Epoch, $"poll #{poll} to node {node.Node.NodeId}: epoch {epoch}, expected {Epoch}");
        Assert.True(answer.GetProperty("recovered").GetBoolean(), $"poll #{poll} to node {node.Node.NodeId} with cursor {Offset}: {text}");
        var offset = Offset;
        foreach (var pub in publications.EnumerateArray())
        {
            var got = pub.GetProperty("offset").GetUInt64();
            Assert.True(got == offset + 1, $"poll #{poll} to node {node.Node.NodeId} with cursor {Offset}: offset {got} follows {offset} (a gap or a duplicate)");
            _data.Add(pub.GetProperty("data"));
            offset = got;
        }
        Assert.Equal(offset, answer.GetProperty("offset").GetUInt64());
        Interlocked.Exchange(ref _offset, (long)offset);
        return answer;
    }
}

/// <summary>Publishers that race each other through the server API of several nodes.</summary>
public static class RacingPublishers
{
    /// <summary>
    /// Starts <paramref name="publishers"/> tasks, each publishing <c>{"p":publisher,"i":index}</c> for index 0 to
    /// <paramref name="perPublisher"/> − 1, alternating between <paramref name="nodes"/> (publisher p's i-th publication goes
    /// to node (p + i) mod n). With a <paramref name="burst"/>, each publisher then awaits <paramref name="readyForMore"/>
    /// (given the highest offset it was answered) after every <paramref name="burst"/> publications.
    /// </summary>
    public static Task RunAsync(IReadOnlyList<TestServer> nodes, string channel, int publishers, int perPublisher, int burst = 0, Func<ulong, bool>? readyForMore = null, string? waitingFor = null) =>
        Task.WhenAll(Enumerable.Range(0, publishers).Select(p => Task.Run(async () =>
        {
            ulong last = 0;
            for (var i = 0; i < perPublisher; i++)
            {
                last = Math.Max(last, await nodes[(p + i) % nodes.Count].PublishAsync(channel, $$"""{"p":{{p}},"i":{{i}}}"""));
                if (burst > 0 && readyForMore is not null && (i + 1) % burst == 0 && i + 1 < perPublisher)
                {
                    var upTo = last;
                    await Wait.UntilAsync(() => readyForMore(upTo), TimeSpan.FromSeconds(20), $"publisher {p}, after offset {upTo}: {waitingFor}");
                }
            }
        })));

    /// <summary>Checks that <paramref name="data"/> holds every publication of <see cref="RunAsync"/> once, each publisher's in the order it published them.</summary>
    public static void AssertEachPublisherInOrder(IReadOnlyList<JsonElement> data, int publishers, int perPublisher)
    {
        Assert.Equal(publishers * perPublisher, data.Count);
        for (var p = 0; p < publishers; p++)
        {
            var own = data.Where(d => d.GetProperty("p").GetInt32() == p).Select(d => d.GetProperty("i").GetInt32());
            Assert.Equal(Enumerable.Range(0, perPublisher), own);
        }
    }
}
