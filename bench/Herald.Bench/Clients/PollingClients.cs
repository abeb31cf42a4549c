using System.Net;
using System.Text.Json;

namespace Herald.Bench.Clients;

/// <summary>
/// Herald's polling subscriber, long (<c>wait</c> &gt; 0) or short (one poll per interval): it keeps the cursor of
/// each answer and sends it back, as the clients do.
/// </summary>
internal sealed class HeraldPollingClient(ClientContext context, string channel, TimeSpan? shortInterval, TimeSpan longWait)
    : BenchClient(context, channel)
{
    private ulong _offset;
    private string? _epoch;

    protected override async Task OpenAsync(CancellationToken cancellationToken) =>
        // The first poll only learns the position: it never returns old publications.
        await PollAsync(wait: TimeSpan.Zero, cancellationToken).ConfigureAwait(false);

    protected override async Task RunAsync(CancellationToken cancellationToken)
    {
        if (shortInterval is not { } interval)
        {
            while (true)
            {
                await PollAsync(longWait, cancellationToken).ConfigureAwait(false);
            }
        }
        // Spread the clients over the interval, as independent browsers would be.
        await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * interval.TotalMilliseconds), cancellationToken).ConfigureAwait(false);
        using var timer = new PeriodicTimer(interval);
        do
        {
            await PollAsync(TimeSpan.Zero, cancellationToken).ConfigureAwait(false);
        }
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
    }

    private async Task PollAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        var uri = _epoch is null
            ? $"poll?channel={Channel}"
            : $"poll?channel={Channel}&offset={_offset}&epoch={_epoch}" + (wait > TimeSpan.Zero ? $"&wait={wait.TotalSeconds:0}" : "");
        Context.Stats.CountRequest();
        using var response = await Context.Http.GetAsync(uri, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new IOException($"poll answered {(int)response.StatusCode}");
        }
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        OnData(body);
        ReadCursor(body);
    }

    private void ReadCursor(ReadOnlySpan<byte> body)
    {
        // {"channels":{"<ch>":{"epoch":"…","offset":N,…}}}: the cursor sits at depth 3.
        var reader = new Utf8JsonReader(body);
        while (reader.Read())
        {
            if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 3)
            {
                continue;
            }
            if (reader.ValueTextEquals("epoch"u8))
            {
                reader.Read();
                _epoch = reader.GetString();
            }
            else if (reader.ValueTextEquals("offset"u8))
            {
                reader.Read();
                _offset = reader.GetUInt64();
            }
            else if (reader.ValueTextEquals("recovered"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.False)
                {
                    Context.Stats.CountError();
                }
            }
        }
    }
}

/// <summary>
/// Nchan's long-poll subscriber: one message per answer; the next request sends the answer's <c>Last-Modified</c>
/// and <c>Etag</c> back as <c>If-Modified-Since</c> and <c>If-None-Match</c>, which is Nchan's cursor.
/// </summary>
internal sealed class NchanLongPollClient(ClientContext context, string channel) : BenchClient(context, channel)
{
    private string? _lastModified;
    private string? _etag;

    protected override Task OpenAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override async Task RunAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"sub/{Channel}");
            if (_lastModified is not null)
            {
                request.Headers.TryAddWithoutValidation("If-Modified-Since", _lastModified);
            }
            if (_etag is not null)
            {
                request.Headers.TryAddWithoutValidation("If-None-Match", _etag);
            }
            Context.Stats.CountRequest();
            using var response = await Context.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
            if (response.StatusCode is HttpStatusCode.NotModified or HttpStatusCode.RequestTimeout)
            {
                continue; // Nchan's long-poll timeout: poll again with the same cursor.
            }
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new IOException($"nchan answered {(int)response.StatusCode}");
            }
            OnData(await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false));
            _lastModified = response.Content.Headers.TryGetValues("Last-Modified", out var lm) ? lm.FirstOrDefault() : _lastModified;
            _etag = response.Headers.TryGetValues("Etag", out var et) ? et.FirstOrDefault() : _etag;
        }
    }
}
