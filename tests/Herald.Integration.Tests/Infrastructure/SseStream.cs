using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace Herald.Integration.Tests.Infrastructure;

/// <summary>One Server-Sent Event as read off the wire: its id (if the event had one), its data, and comment lines seen before it.</summary>
public sealed record SseEvent(string? Id, string Data, int CommentsBefore)
{
    public JsonElement Json => JsonDocument.Parse(Data).RootElement;
}

/// <summary>
/// A minimal text/event-stream reader (the event-stream grammar of the HTML standard: lines, <c>id:</c>, <c>data:</c>,
/// <c>:</c> comments, blank line dispatches) over any stream: an HttpClient response or curl's stdout.
/// </summary>
public sealed class SseStream : IAsyncDisposable
{
    private readonly Channel<SseEvent> _events = Channel.CreateUnbounded<SseEvent>();
    private readonly Task _reading;
    private readonly IDisposable? _owner;
    private int _comments;

    public SseStream(Stream stream, IDisposable? owner = null)
    {
        _owner = owner;
        _reading = Task.Run(() => ReadAsync(stream));
    }

    /// <summary>Comment lines (heartbeats) seen so far.</summary>
    public int Comments => Volatile.Read(ref _comments);

    /// <summary>Completes when the stream has ended.</summary>
    public Task Ended => _events.Reader.Completion;

    public static async Task<(HttpResponseMessage Response, SseStream? Stream)> OpenAsync(HttpClient http, string pathAndQuery, Action<HttpRequestMessage>? configure = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, pathAndQuery);
        configure?.Invoke(request);
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (!response.IsSuccessStatusCode)
        {
            return (response, null);
        }
        return (response, new SseStream(await response.Content.ReadAsStreamAsync(), response));
    }

    public async Task<SseEvent> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            return await _events.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail("no SSE event in time");
            throw;
        }
    }

    private async Task ReadAsync(Stream stream)
    {
        string? id = null;
        var data = new StringBuilder();
        var hasData = false;
        var commentsBefore = 0;
        try
        {
            using var reader = new StreamReader(stream, Encoding.UTF8);
            while (await reader.ReadLineAsync() is { } line)
            {
                if (line.Length == 0)
                {
                    if (hasData)
                    {
                        await _events.Writer.WriteAsync(new SseEvent(id, data.ToString(), commentsBefore));
                        commentsBefore = 0;
                    }
                    id = null;
                    data.Clear();
                    hasData = false;
                }
                else if (line[0] == ':')
                {
                    commentsBefore++;
                    Interlocked.Increment(ref _comments);
                }
                else if (line.StartsWith("id: ", StringComparison.Ordinal))
                {
                    id = line[4..];
                }
                else if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    if (hasData)
                    {
                        data.Append('\n');
                    }
                    data.Append(line, 6, line.Length - 6);
                    hasData = true;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or HttpRequestException or OperationCanceledException)
        {
        }
        finally
        {
            _events.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _owner?.Dispose();
        await _reading.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}
