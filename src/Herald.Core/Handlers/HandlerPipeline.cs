using System.Text.Json;
using Herald.Protocol;
using Herald.Sessions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald.Handlers;

/// <summary>
/// Runs the application's <see cref="IHeraldHandler"/>s, in registration order, for every transport: each call under
/// <see cref="HeraldOptions.HandlerTimeout"/>, a throw or a timeout turned into <c>internal</c> (or the
/// <see cref="HeraldHandlerException"/>'s own error) and logged. Transports ask it about a hook only when a handler
/// implements that hook (<see cref="HandlesConnect"/>, <see cref="HandlesSubscribe"/>, …), so a server without handlers,
/// or whose handlers leave a hook to <see cref="HeraldHandler"/>'s default, builds no context and pays nothing there.
/// </summary>
internal sealed partial class HandlerPipeline
{
    /// <summary>Longest RPC method name.</summary>
    public const int MaxMethodLength = 64;

    private readonly IHeraldHandler[] _handlers;
    // Per hook, the handlers that implement it: a HeraldHandler that keeps the base class's pass-through for a hook is
    // left out of that hook, which answers the same without it (and without a timeout to arm per call).
    private readonly IHeraldHandler[] _connect;
    private readonly IHeraldHandler[] _subscribe;
    private readonly IHeraldHandler[] _publish;
    private readonly IHeraldHandler[] _disconnect;
    private readonly ILogger _logger;

    /// <summary>Creates the pipeline over <paramref name="handlers"/>, in the order given.</summary>
    public HandlerPipeline(IEnumerable<IHeraldHandler> handlers, TimeSpan timeout, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(handlers);
        _handlers = [.. handlers];
        _connect = Implementing(_handlers, nameof(IHeraldHandler.OnConnectAsync));
        _subscribe = Implementing(_handlers, nameof(IHeraldHandler.OnSubscribeAsync));
        _publish = Implementing(_handlers, nameof(IHeraldHandler.OnPublishAsync));
        _disconnect = Implementing(_handlers, nameof(IHeraldHandler.OnDisconnectAsync));
        Timeout = timeout;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>No handler: every hook allows, and <c>rpc</c> is <c>not_available</c>.</summary>
    public static HandlerPipeline Empty { get; } = new([], TimeSpan.FromSeconds(5));

    /// <summary>Whether no handler is registered.</summary>
    public bool IsEmpty => _handlers.Length == 0;

    /// <summary>Whether a handler implements <c>connect</c>; without one, <see cref="ConnectAsync"/> returns the authenticator's decision.</summary>
    public bool HandlesConnect => _connect.Length > 0;

    /// <summary>Whether a handler implements <c>subscribe</c>; without one, <see cref="SubscribeAsync"/> allows.</summary>
    public bool HandlesSubscribe => _subscribe.Length > 0;

    /// <summary>Whether a handler implements <c>publish</c>; without one, <see cref="PublishAsync"/> returns the payload unchanged.</summary>
    public bool HandlesPublish => _publish.Length > 0;

    /// <summary>Whether a handler implements <c>disconnect</c>.</summary>
    public bool HandlesDisconnect => _disconnect.Length > 0;

    /// <summary>How long one handler call may take.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>
    /// Checks an RPC method name: 1 to <see cref="MaxMethodLength"/> characters of <c>A-Z a-z 0-9 _ - . :</c>. Returns the
    /// <c>bad_request</c> error, or <see langword="null"/> when it is valid.
    /// </summary>
    public static HeraldError? CheckMethod(string? method)
    {
        if (method is { Length: > 0 and <= MaxMethodLength } && method.AsSpan().IndexOfAnyExcept(MethodCharacters) < 0)
        {
            return null;
        }
        return new HeraldError(ErrorCodes.BadRequest, $"'method' must be 1 to {MaxMethodLength} characters of A-Z a-z 0-9 _ - . :");
    }

    private static readonly System.Buffers.SearchValues<char> MethodCharacters =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:");

    /// <summary>
    /// Passes the authenticator's decision through every handler, each one's answer to the next. A
    /// <see cref="HeraldError"/> stops the chain and refuses the client.
    /// </summary>
    public async ValueTask<HeraldResult<AuthenticationResult>> ConnectAsync(ConnectContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        foreach (var handler in _connect)
        {
            var answer = await CallAsync(handler, static (h, c, t) => h.OnConnectAsync(c, t), context, "connect", context.Client, cancellationToken);
            if (!answer.TryGetValue(out var authentication, out var error))
            {
                return error;
            }
            if (authentication is null)
            {
                Log.NoAnswer(_logger, "connect", context.Client, handler.GetType().Name);
                return new HeraldError(ErrorCodes.Internal, "the application's connect handler gave no answer");
            }
            context = context with { Authentication = authentication };
        }
        return context.Authentication;
    }

    /// <summary>Asks every handler; the first refusal wins. The data of the last handler that attached any goes in the reply.</summary>
    public async ValueTask<HeraldResult<SubscribeAccepted>> SubscribeAsync(SubscribeContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var accepted = SubscribeAccepted.Allow;
        foreach (var handler in _subscribe)
        {
            var answer = await CallAsync(handler, static (h, c, t) => h.OnSubscribeAsync(c, t), context, "subscribe", context.Client.Client, cancellationToken);
            if (!answer.TryGetValue(out var allowed, out var error))
            {
                return error;
            }
            if (allowed?.Data is not null)
            {
                accepted = allowed;
            }
        }
        return accepted;
    }

    /// <summary>Asks every handler; the first refusal wins, and a replaced payload is what the next handler sees. Returns the payload to publish.</summary>
    public async ValueTask<HeraldResult<JsonElement>> PublishAsync(PublishContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        foreach (var handler in _publish)
        {
            var answer = await CallAsync(handler, static (h, c, t) => h.OnPublishAsync(c, t), context, "publish", context.Client.Client, cancellationToken);
            if (!answer.TryGetValue(out var accepted, out var error))
            {
                return error;
            }
            if (accepted?.Data is { } replaced)
            {
                context = context with { Data = replaced, Bytes = null };
            }
        }
        return context.Data;
    }

    /// <summary>The first handler whose answer is not <c>not_available</c> answers the call.</summary>
    public async ValueTask<HeraldResult<RpcReply>> RpcAsync(RpcContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        HeraldError? notMine = null;
        foreach (var handler in _handlers)
        {
            var answer = await CallAsync(handler, static (h, c, t) => h.OnRpcAsync(c, t), context, "rpc", context.Client.Client, cancellationToken);
            if (answer.Error is { Code: ErrorCodes.NotAvailable } error)
            {
                notMine = error;
                continue;
            }
            if (answer.Error is not null)
            {
                return answer;
            }
            return answer.Value ?? new RpcReply();
        }
        return notMine ?? new HeraldError(ErrorCodes.NotAvailable, $"no handler answers the method '{context.Method}'");
    }

    /// <summary>
    /// Tells every handler that a client left, on the thread pool: the caller's teardown never waits for the application.
    /// Failures and timeouts are logged.
    /// </summary>
    public void NotifyDisconnect(DisconnectContext context)
    {
        if (!HandlesDisconnect)
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            foreach (var handler in _disconnect)
            {
                await CallAsync(handler, static async (h, c, t) =>
                {
                    await h.OnDisconnectAsync(c, t);
                    return new HeraldResult<bool>(true);
                }, context, "disconnect", context.Client.Client, CancellationToken.None);
            }
        }, CancellationToken.None);
    }

    // The interface map names the method a call through IHeraldHandler lands on: an override, a re-implementation of the
    // interface, or HeraldHandler's own default.
    private static IHeraldHandler[] Implementing(IHeraldHandler[] handlers, string hook) =>
        [.. handlers.Where(handler =>
        {
            var map = handler.GetType().GetInterfaceMap(typeof(IHeraldHandler));
            return map.TargetMethods[Array.FindIndex(map.InterfaceMethods, m => m.Name == hook)].DeclaringType != typeof(HeraldHandler);
        })];

    /// <summary>One handler call under the timeout; an exception or a timeout becomes an error, logged. The caller's cancellation propagates.</summary>
    private async ValueTask<HeraldResult<T>> CallAsync<TContext, T>(
        IHeraldHandler handler,
        Func<IHeraldHandler, TContext, CancellationToken, ValueTask<HeraldResult<T>>> call,
        TContext context,
        string hook,
        string client,
        CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        Task<HeraldResult<T>>? waited = null;
        try
        {
            var pending = call(handler, context, timeout.Token);
            if (pending.IsCompletedSuccessfully)
            {
                return pending.Result;
            }
            // WaitAsync: a handler that ignores its token must not hold the client past the timeout either.
            waited = pending.AsTask();
            return await waited.WaitAsync(timeout.Token);
        }
        catch (HeraldHandlerException ex)
        {
            Log.Refused(_logger, hook, client, handler.GetType().Name, ex.Error.Code, ex.Error.Message);
            return ex.Error;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && waited is { IsCompleted: true } && !waited.IsCanceled)
        {
            // The handler answered before this timeout was handled (a busy thread pool ran its answer first): its
            // answer stands. So a handler with a deadline of its own just under the timeout, as the proxy's, is heard.
            return await AnswerOf(waited, handler, hook, client);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            Log.TimedOut(_logger, hook, client, handler.GetType().Name, Timeout.TotalSeconds);
            return new HeraldError(ErrorCodes.Internal, $"the application did not answer {hook} in time");
        }
        catch (Exception ex)
        {
            Log.Failed(_logger, hook, client, handler.GetType().Name, ex);
            return new HeraldError(ErrorCodes.Internal, $"the application failed to handle {hook}");
        }
    }

    /// <summary>The answer of a handler call that completed, its refusal or failure turned into an error as above.</summary>
    private async ValueTask<HeraldResult<T>> AnswerOf<T>(Task<HeraldResult<T>> completed, IHeraldHandler handler, string hook, string client)
    {
        try
        {
            return await completed;
        }
        catch (HeraldHandlerException ex)
        {
            Log.Refused(_logger, hook, client, handler.GetType().Name, ex.Error.Code, ex.Error.Message);
            return ex.Error;
        }
        catch (Exception ex)
        {
            Log.Failed(_logger, hook, client, handler.GetType().Name, ex);
            return new HeraldError(ErrorCodes.Internal, $"the application failed to handle {hook}");
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 600, Level = LogLevel.Error, Message = "Handler {Handler} failed on {Hook} for client {ClientId}")]
        public static partial void Failed(ILogger logger, string hook, string clientId, string handler, Exception exception);

        [LoggerMessage(EventId = 601, Level = LogLevel.Warning, Message = "Handler {Handler} did not answer {Hook} for client {ClientId} within {TimeoutSeconds} s (Herald:HandlerTimeout)")]
        public static partial void TimedOut(ILogger logger, string hook, string clientId, string handler, double timeoutSeconds);

        [LoggerMessage(EventId = 602, Level = LogLevel.Debug, Message = "Handler {Handler} refused {Hook} for client {ClientId}: {Code} {Reason}")]
        public static partial void Refused(ILogger logger, string hook, string clientId, string handler, string code, string reason);

        [LoggerMessage(EventId = 603, Level = LogLevel.Error, Message = "Handler {Handler} gave no answer to {Hook} for client {ClientId}")]
        public static partial void NoAnswer(ILogger logger, string hook, string clientId, string handler);
    }
}
