using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Herald.Handlers;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.AspNetCore.Proxy;

/// <summary>
/// The application's hooks over HTTP: each connect, subscribe, publish and RPC whose hook has a URL is posted as JSON
/// to the application's backend, which allows, refuses or changes it (docs/protocol.md, "HTTP proxy of hooks"). A hook
/// without a URL behaves as <see cref="HeraldHandler"/>'s default. A backend that is down or slow gives the client
/// <c>unavailable</c>; one that answers something else than the contract gives <c>internal</c>; both are logged.
/// </summary>
internal sealed class ProxyHandler : IHeraldHandler
{
    /// <summary>The name of the <see cref="HttpClient"/> (pooled connections) the proxy posts with.</summary>
    public const string HttpClientName = "Herald.Proxy";

    /// <summary>The longest error message a backend may send to a client.</summary>
    public const int MaxErrorMessageLength = 1024;

    /// <summary>The longest error code a backend may send.</summary>
    public const int MaxErrorCodeLength = 64;

    private static readonly MediaTypeHeaderValue JsonContentType = new("application/json") { CharSet = "utf-8" };

    private readonly IHttpClientFactory _clients;
    private readonly ProxyOptions _options;
    private readonly TimeSpan _timeout;
    private readonly ILogger _logger;
    private readonly Uri? _connect;
    private readonly Uri? _subscribe;
    private readonly Uri? _publish;
    private readonly Uri? _rpc;

    public ProxyHandler(IHttpClientFactory clients, IOptions<ProxyOptions> options, IOptions<HeraldOptions> herald, ILogger<ProxyHandler> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(herald);
        _clients = clients ?? throw new ArgumentNullException(nameof(clients));
        _options = options.Value;
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        _timeout = ProxyOptionsValidator.EffectiveTimeout(_options.Timeout, herald.Value.HandlerTimeout);
        _connect = ProxyOptionsValidator.ParseUrl(_options.Connect.Url);
        _subscribe = ProxyOptionsValidator.ParseUrl(_options.Subscribe.Url);
        _publish = ProxyOptionsValidator.ParseUrl(_options.Publish.Url);
        _rpc = ProxyOptionsValidator.ParseUrl(_options.Rpc.Url);
    }

    public async ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_connect is null)
        {
            return context.Authentication;
        }
        var auth = context.Authentication;
        var body = new ProxyConnectRequest(
            context.Client, context.Transport, auth.Succeeded ? auth.User : "", auth.Succeeded, auth.Error, context.Token, context.RemoteAddress);
        var answer = await CallAsync(Hook.Connect, _connect, body, ProxyJsonContext.Default.ProxyConnectRequest, context.Headers, cancellationToken);
        if (!answer.TryGetValue(out var result, out var error))
        {
            return error;
        }
        if (!TryRead(result, ProxyJsonContext.Default.ProxyConnectResult, out var connect) || ToAuthentication(connect, auth) is not { } outcome)
        {
            return Garbage(Hook.Connect, _connect, "the connect result has the wrong shape");
        }
        return outcome;
    }

    public async ValueTask<HeraldResult<SubscribeAccepted>> OnSubscribeAsync(SubscribeContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_subscribe is null)
        {
            return SubscribeAccepted.Allow;
        }
        var body = new ProxySubscribeRequest(context.Client.Client, context.Client.User, context.Transport, context.Channel, context.Client.Info);
        var answer = await CallAsync(Hook.Subscribe, _subscribe, body, ProxyJsonContext.Default.ProxySubscribeRequest, null, cancellationToken);
        if (!answer.TryGetValue(out var result, out var error))
        {
            return error;
        }
        return TryRead(result, ProxyJsonContext.Default.ProxyDataResult, out var accepted)
            ? accepted.Data is null ? SubscribeAccepted.Allow : new SubscribeAccepted(accepted.Data)
            : Garbage(Hook.Subscribe, _subscribe, "the subscribe result has the wrong shape");
    }

    public async ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_publish is null)
        {
            return PublishAccepted.Unchanged;
        }
        var body = context.Bytes is { } bytes
            ? new ProxyPublishRequest(context.Client.Client, context.Client.User, context.Transport, context.Channel, null, context.Client.Info) { B64 = Convert.ToBase64String(bytes.Span) }
            : new ProxyPublishRequest(context.Client.Client, context.Client.User, context.Transport, context.Channel, context.Data, context.Client.Info);
        var answer = await CallAsync(Hook.Publish, _publish, body, ProxyJsonContext.Default.ProxyPublishRequest, null, cancellationToken);
        if (!answer.TryGetValue(out var result, out var error))
        {
            return error;
        }
        return TryRead(result, ProxyJsonContext.Default.ProxyDataResult, out var accepted)
            ? accepted.Data is null ? PublishAccepted.Unchanged : new PublishAccepted(accepted.Data)
            : Garbage(Hook.Publish, _publish, "the publish result has the wrong shape");
    }

    public async ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_rpc is null)
        {
            return new HeraldError(ErrorCodes.NotAvailable, $"no handler for the method '{context.Method}'");
        }
        var body = new ProxyRpcRequest(context.Client.Client, context.Client.User, context.Transport, context.Method, context.Data, context.Client.Info);
        var answer = await CallAsync(Hook.Rpc, _rpc, body, ProxyJsonContext.Default.ProxyRpcRequest, null, cancellationToken);
        if (!answer.TryGetValue(out var result, out var error))
        {
            return error;
        }
        return TryRead(result, ProxyJsonContext.Default.ProxyDataResult, out var reply)
            ? new RpcReply(reply.Data)
            : Garbage(Hook.Rpc, _rpc, "the RPC result has the wrong shape");
    }

    /// <summary>Disconnects are not proxied: nothing waits for an answer, so a request per disconnect would be load without a decision.</summary>
    public ValueTask OnDisconnectAsync(DisconnectContext context, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>
    /// Posts one hook and reads the answer: the <c>result</c> object, the backend's own error, or the error the client
    /// gets for a backend that failed. Cancellation of <paramref name="cancellationToken"/> (the caller gave up) is
    /// thrown; the proxy's own timeout is an answer (<c>unavailable</c>).
    /// </summary>
    private async ValueTask<HeraldResult<JsonElement>> CallAsync<TRequest>(
        Hook hook, Uri url, TRequest body, JsonTypeInfo<TRequest> type, IReadOnlyDictionary<string, string>? headers, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_timeout);
        using var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(body, type)) { Headers = { ContentType = JsonContentType } },
        };
        if (headers is not null)
        {
            foreach (var name in _options.ForwardHeaders)
            {
                if (headers.TryGetValue(name, out var value))
                {
                    request.Headers.TryAddWithoutValidation(name, value);
                }
            }
        }
        byte[] rented = [];
        try
        {
            using var response = await _clients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            if (!response.IsSuccessStatusCode)
            {
                var status = (int)response.StatusCode;
                ProxyLog.BadStatus(_logger, hook, url, status);
                // A gateway in front of the backend says it is down or overloaded: the client may retry later.
                return response.StatusCode is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout
                    ? new HeraldError(ErrorCodes.Unavailable, $"the application backend is unavailable (HTTP {status})")
                    : new HeraldError(ErrorCodes.Internal, $"the application backend failed (HTTP {status})");
            }
            if (response.Content.Headers.ContentLength > _options.MaxResponseBytes)
            {
                return Garbage(hook, url, $"the answer is larger than Herald:Proxy:MaxResponseBytes ({_options.MaxResponseBytes})");
            }
            rented = ArrayPool<byte>.Shared.Rent(Math.Min(_options.MaxResponseBytes + 1, 16 * 1024));
            var length = 0;
            await using (var stream = await response.Content.ReadAsStreamAsync(timeout.Token))
            {
                while (true)
                {
                    if (length == rented.Length)
                    {
                        if (length > _options.MaxResponseBytes)
                        {
                            return Garbage(hook, url, $"the answer is larger than Herald:Proxy:MaxResponseBytes ({_options.MaxResponseBytes})");
                        }
                        var larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(rented.Length * 2L, _options.MaxResponseBytes + 1L));
                        rented.AsSpan(0, length).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(rented);
                        rented = larger;
                    }
                    var read = await stream.ReadAsync(rented.AsMemory(length), timeout.Token);
                    if (read == 0)
                    {
                        break;
                    }
                    length += read;
                }
            }
            if (length > _options.MaxResponseBytes)
            {
                return Garbage(hook, url, $"the answer is larger than Herald:Proxy:MaxResponseBytes ({_options.MaxResponseBytes})");
            }
            return Interpret(hook, url, rented.AsSpan(0, length));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            ProxyLog.TimedOut(_logger, hook, url, (long)_timeout.TotalMilliseconds);
            return new HeraldError(ErrorCodes.Unavailable, $"the application backend did not answer within {_timeout.TotalSeconds:0.###} s");
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            ProxyLog.Unreachable(_logger, hook, url, ex);
            return new HeraldError(ErrorCodes.Unavailable, "the application backend cannot be reached");
        }
        finally
        {
            if (rented.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Checks the envelope: exactly one of an object <c>result</c> and a well-formed <c>error</c>.</summary>
    private HeraldResult<JsonElement> Interpret(Hook hook, Uri url, ReadOnlySpan<byte> json)
    {
        ProxyAnswer? answer;
        try
        {
            answer = JsonSerializer.Deserialize(json, ProxyJsonContext.Default.ProxyAnswer);
        }
        catch (JsonException)
        {
            return Garbage(hook, url, "the answer is not a JSON object");
        }
        if (answer is null)
        {
            return Garbage(hook, url, "the answer is not a JSON object");
        }
        if (answer.Error is { } error)
        {
            if (answer.Result is not null)
            {
                return Garbage(hook, url, "the answer has both 'result' and 'error'");
            }
            return TryRead(error, ProxyJsonContext.Default.ProxyErrorBody, out var body)
                && IsErrorCode(body.Code)
                && body.Message is { Length: <= MaxErrorMessageLength }
                    ? new HeraldError(body.Code!, body.Message)
                    : Garbage(hook, url, $"the error must be {{\"code\":\"<1-{MaxErrorCodeLength} of A-Z a-z 0-9 _ - . :>\",\"message\":\"<at most {MaxErrorMessageLength} characters>\"}}");
        }
        return answer.Result is { ValueKind: JsonValueKind.Object } result
            ? result
            : Garbage(hook, url, "the answer has neither an object 'result' nor an 'error'");
    }

    /// <summary>The connect result as an authentication, or <see langword="null"/> when its fields have the wrong shape.</summary>
    private static AuthenticationResult? ToAuthentication(ProxyConnectResult result, AuthenticationResult token)
    {
        if (result.User is null)
        {
            // Without a user the backend does not speak for the client: the token decides, and the other fields would
            // have no one to apply to.
            return result.Channels is null && result.Info is null && result.ExpireAt is null ? token : null;
        }
        var grants = new List<ChannelGrant>();
        foreach (var (pattern, rights) in result.Channels ?? [])
        {
            if (pattern.Length == 0 || rights is null || rights.Any(r => r is not ("subscribe" or "publish")))
            {
                return null;
            }
            grants.Add(new ChannelGrant(pattern, rights.Contains("subscribe"), rights.Contains("publish")));
        }
        if (result.Info is { ValueKind: not JsonValueKind.Object })
        {
            return null;
        }
        if (result.ExpireAt is <= 0 or > 253_402_300_799)
        {
            return null;
        }
        return new AuthenticationResult(true, result.User, null)
        {
            Grants = grants,
            Info = result.Info,
            ExpiresAt = result.ExpireAt is { } seconds ? DateTimeOffset.FromUnixTimeSeconds(seconds) : null,
        };
    }

    private static bool TryRead<T>(JsonElement element, JsonTypeInfo<T> type, out T value)
        where T : class
    {
        try
        {
            value = element.Deserialize(type)!;
            return value is not null;
        }
        catch (JsonException)
        {
            value = null!;
            return false;
        }
    }

    private HeraldError Garbage(Hook hook, Uri url, string problem)
    {
        ProxyLog.InvalidAnswer(_logger, hook, url, problem);
        return new HeraldError(ErrorCodes.Internal, "the application backend's answer is invalid");
    }

    private static bool IsErrorCode(string? code) =>
        code is { Length: > 0 and <= MaxErrorCodeLength }
        && code.All(static c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-' or '.' or ':');
}

/// <summary>The proxied hooks, as logs name them.</summary>
internal enum Hook
{
    Connect,
    Subscribe,
    Publish,
    Rpc,
}
