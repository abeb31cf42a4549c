using System.Net;
using System.Text.Json;
using Herald.Brokers;
using Herald.Integration.Tests.Infrastructure;
using Herald.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Integration.Tests;

/// <summary>
/// A broker that cannot reach its backend: every transport answers <c>unavailable</c> (503 over HTTP) at once, accepts
/// nothing it could not store, keeps the connection open, and works again as soon as the broker is back.
/// </summary>
public sealed class BrokerUnavailableTests : IAsyncLifetime
{
    private readonly SwitchableBroker _broker = new();
    private TestServer _server = null!;

    public async Task InitializeAsync() =>
        _server = await TestServer.StartAsync(configureServices: services => services.AddSingleton<IBroker>(_broker));

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task EveryTransport_WhileTheBrokerIsDown_AnswersUnavailable_ThenWorksAgain_WithNoOffsetLost()
    {
        Assert.Equal(1UL, await _server.PublishAsync("chat:down", """{"n":1}"""));
        await using var ws = await _server.ConnectAsync();
        _broker.Down = true;

        using (var publish = await _server.Api.PostAsync("/api/publish", new StringContent("""{"channel":"chat:down","data":{"n":2}}""")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, publish.StatusCode);
            Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await publish.Content.ReadAsStringAsync()));
        }
        using (var history = await _server.Api.GetAsync("/api/channels/chat:down/history"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, history.StatusCode);
        }
        using (var cmd = await _server.Http.PostAsync("/cmd", new StringContent("""{"id":1,"op":"publish","channel":"chat:down","data":{"n":2}}""")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, cmd.StatusCode);
            Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await cmd.Content.ReadAsStringAsync()));
        }
        foreach (var poll in new[] { "/poll?channel=chat:down", "/poll?channel=chat:down&wait=5" })
        {
            using var answer = await _server.Http.GetAsync(poll);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, answer.StatusCode);
            Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await answer.Content.ReadAsStringAsync()));
        }
        Assert.Equal(0, _server.Node.ParkedPolls);
        Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await ws.CommandAsync("""{"op":"publish","channel":"chat:down","data":{"n":2}}""")));
        Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await ws.CommandAsync("""{"op":"subscribe","channel":"chat:down"}""")));
        Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await ws.CommandAsync("""{"op":"history","channel":"chat:down"}""")));

        // Back up: the same connection subscribes and publishes, and the log went on from where it was: nothing was
        // accepted while the broker was down.
        _broker.Down = false;
        var subscribed = await ws.CommandAsync("""{"op":"subscribe","channel":"chat:down"}""");
        Assert.Equal(1UL, subscribed.GetProperty("result").GetProperty("offset").GetUInt64());
        var published = await ws.CommandAsync("""{"op":"publish","channel":"chat:down","data":{"n":2}}""");
        Assert.Equal(2UL, published.GetProperty("result").GetProperty("offset").GetUInt64());
        Assert.Equal(2UL, (await ws.NextPushAsync()).GetProperty("push").GetProperty("pub").GetProperty("offset").GetUInt64());
    }

    private static string? ErrorCode(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return ErrorCode(doc.RootElement);
    }

    private static string? ErrorCode(JsonElement reply) => reply.GetProperty("error").GetProperty("code").GetString();

    /// <summary>A memory broker that can be switched off: every call then fails as a broker whose backend is unreachable does.</summary>
    [Theory]
    [InlineData("/api/disconnect", """{"user":"alice"}""")]
    [InlineData("/api/subscribe", """{"user":"alice","channel":"chat:down"}""")]
    [InlineData("/api/unsubscribe", """{"user":"alice","channel":"chat:down"}""")]
    public async Task UserCommands_WhileTheBrokerIsDown_AnswerUnavailable(string path, string body)
    {
        _broker.Down = true;
        using var response = await _server.Api.PostAsync(path, new StringContent(body));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(ErrorCodes.Unavailable, ErrorCode(await response.Content.ReadAsStringAsync()));
        _broker.Down = false;
        using var again = await _server.Api.PostAsync(path, new StringContent(body));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }

    private sealed class SwitchableBroker : IBroker
    {
        private readonly MemoryBroker _inner = new();

        public volatile bool Down;

        public ValueTask StartAsync(IBrokerEventHandler handler, CancellationToken cancellationToken = default) => _inner.StartAsync(handler, cancellationToken);

        public ValueTask<StreamPosition> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
            Down ? throw new BrokerUnavailableException() : _inner.PublishAsync(channel, data, info, history, kind, cancellationToken);

        public ValueTask<PublishResult> PublishAsync(string channel, ReadOnlyMemory<byte> data, ClientInfo? info, HistoryPolicy history, IdempotencyKey idempotency, PayloadKind kind = PayloadKind.Json, CancellationToken cancellationToken = default) =>
            Down ? throw new BrokerUnavailableException() : _inner.PublishAsync(channel, data, info, history, idempotency, kind, cancellationToken);

        public ValueTask<HistoryResult> ReadHistoryAsync(string channel, ulong? afterOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
            Down ? throw new BrokerUnavailableException() : _inner.ReadHistoryAsync(channel, afterOffset, limit, history, cancellationToken);

        public ValueTask<HistoryResult> ReadHistoryBackwardAsync(string channel, ulong? beforeOffset, int limit, HistoryPolicy history, CancellationToken cancellationToken = default) =>
            Down ? throw new BrokerUnavailableException() : _inner.ReadHistoryBackwardAsync(channel, beforeOffset, limit, history, cancellationToken);

        public ValueTask SubscribeAsync(string channel, CancellationToken cancellationToken = default) =>
            Down ? throw new BrokerUnavailableException() : _inner.SubscribeAsync(channel, cancellationToken);

        public ValueTask UnsubscribeAsync(string channel, CancellationToken cancellationToken = default) => _inner.UnsubscribeAsync(channel, cancellationToken);

        public ValueTask SendControlAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken = default) =>
            Down ? throw new BrokerUnavailableException() : _inner.SendControlAsync(message, cancellationToken);

        public ValueTask DisposeAsync() => _inner.DisposeAsync();
    }
}
