using System.Text.Json;
using Herald.Protocol;
using Herald.Sessions;

namespace Herald.Handlers;

/// <summary>
/// Application code that takes part in Herald's life cycle: it decides who connects (and as whom), who subscribes to
/// what, what a client may publish (and in what form), answers clients' RPC calls and hears of disconnects. Herald calls
/// it for every transport where the hook applies (WebSocket, <c>POST /cmd</c>, <c>/poll</c>).
/// </summary>
/// <remarks>
/// <para>Register handlers in DI beside <c>AddHerald()</c>; several may be registered, and Herald calls them in
/// registration order: <see cref="OnConnectAsync"/> passes each handler's answer to the next, the first refusal of
/// <see cref="OnSubscribeAsync"/> or <see cref="OnPublishAsync"/> wins (a replaced publish payload goes to the next
/// handler), and <see cref="OnRpcAsync"/> is answered by the first handler whose answer is not <c>not_available</c>.</para>
/// <para>Each call is cancelled after <c>Herald:HandlerTimeout</c>; a handler that throws or times out gives the
/// client the error <c>internal</c> (a <see cref="HeraldHandlerException"/> gives its own code and message), is logged,
/// and leaves the connection and every other client going. Derive from <see cref="HeraldHandler"/> to override only
/// the hooks you need.</para>
/// </remarks>
public interface IHeraldHandler
{
    /// <summary>
    /// A client connects (a WebSocket <c>connect</c>, or each <c>/cmd</c> and <c>/poll</c> request, which carry their
    /// token). <see cref="ConnectContext.Authentication"/> is what the configured authenticator (JWT, or anonymous
    /// access) decided, refusal included. Return it to follow it, another <see cref="AuthenticationResult"/> to replace
    /// it (user, grants, info, expiry), or a <see cref="HeraldError"/> to refuse the client with that code and message.
    /// </summary>
    ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken);

    /// <summary>
    /// A connected client subscribes to (or polls) a channel it is allowed to read by Herald's own rules. Return a
    /// <see cref="SubscribeAccepted"/> to allow it (its <see cref="SubscribeAccepted.Data"/>, if any, is attached to the
    /// subscribe reply as <c>data</c>) or a <see cref="HeraldError"/> to refuse it.
    /// </summary>
    ValueTask<HeraldResult<SubscribeAccepted>> OnSubscribeAsync(SubscribeContext context, CancellationToken cancellationToken);

    /// <summary>
    /// A client publishes (not the server API, nor the application through <c>IHeraldServer</c>), after Herald's own
    /// checks. Return a <see cref="PublishAccepted"/> (with a replacement <see cref="PublishAccepted.Data"/>, or none to
    /// keep the client's) or a <see cref="HeraldError"/> to refuse the publication.
    /// </summary>
    ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken);

    /// <summary>
    /// A client calls <paramref name="context"/>'s <see cref="RpcContext.Method"/>. Return a <see cref="RpcReply"/> or a
    /// <see cref="HeraldError"/>; an error with the code <c>not_available</c> means "not mine": the next handler is asked.
    /// </summary>
    ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken);

    /// <summary>A WebSocket client that had connected is gone, with the close code and reason of the end.</summary>
    ValueTask OnDisconnectAsync(DisconnectContext context, CancellationToken cancellationToken);
}

/// <summary>
/// A handler that allows everything and answers no RPC method: derive from it and override only the hooks you need.
/// </summary>
public abstract class HeraldHandler : IHeraldHandler
{
    /// <inheritdoc/>
    public virtual ValueTask<HeraldResult<AuthenticationResult>> OnConnectAsync(ConnectContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        return ValueTask.FromResult(new HeraldResult<AuthenticationResult>(context.Authentication));
    }

    /// <inheritdoc/>
    public virtual ValueTask<HeraldResult<SubscribeAccepted>> OnSubscribeAsync(SubscribeContext context, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new HeraldResult<SubscribeAccepted>(SubscribeAccepted.Allow));

    /// <inheritdoc/>
    public virtual ValueTask<HeraldResult<PublishAccepted>> OnPublishAsync(PublishContext context, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new HeraldResult<PublishAccepted>(PublishAccepted.Unchanged));

    /// <inheritdoc/>
    public virtual ValueTask<HeraldResult<RpcReply>> OnRpcAsync(RpcContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        return ValueTask.FromResult(new HeraldResult<RpcReply>(new HeraldError(ErrorCodes.NotAvailable, $"no handler for the method '{context.Method}'")));
    }

    /// <inheritdoc/>
    public virtual ValueTask OnDisconnectAsync(DisconnectContext context, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}

/// <summary>
/// An error a handler throws to refuse with a code and message of its own choosing; the client receives exactly them.
/// Any other exception gives the client <c>internal</c>.
/// </summary>
public sealed class HeraldHandlerException : Exception
{
    /// <summary>Creates the exception from an error.</summary>
    public HeraldHandlerException(HeraldError error)
        : base(error?.Message)
    {
        ArgumentNullException.ThrowIfNull(error);
        Error = error;
    }

    /// <summary>Creates the exception with a code and a message.</summary>
    public HeraldHandlerException(string code, string message)
        : this(new HeraldError(code, message))
    {
    }

    /// <summary>The error the client receives.</summary>
    public HeraldError Error { get; }
}

/// <summary>The transports as handlers (and the HTTP proxy's <c>transport</c> field) name them.</summary>
public static class HeraldTransportNames
{
    /// <summary>A WebSocket connection (<c>GET /ws</c>).</summary>
    public const string WebSocket = "websocket";

    /// <summary>A command over plain HTTP (<c>POST /cmd</c>).</summary>
    public const string Command = "http";

    /// <summary>A short or long poll (<c>/poll</c>).</summary>
    public const string Poll = "poll";

    /// <summary>A Server-Sent Events stream (<c>GET /sse</c>).</summary>
    public const string Sse = "sse";
}

/// <summary>What <see cref="IHeraldHandler.OnConnectAsync"/> is told.</summary>
/// <param name="Client">The connection's client id: a new one per <c>/cmd</c> or <c>/poll</c> request, except a <c>GET /poll</c> whose query names its <c>client</c> (a <c>POST /poll</c>'s body is read only after connect).</param>
/// <param name="Transport">One of <see cref="HeraldTransportNames"/>.</param>
/// <param name="Token">The token the client sent, or <see langword="null"/>.</param>
/// <param name="Authentication">What the configured authenticator decided (it may be a refusal).</param>
/// <param name="Headers">The HTTP request's headers (of the WebSocket handshake, or of the request), by case-insensitive name; several values of one header are joined with commas.</param>
/// <param name="RemoteAddress">The client's IP address as Herald sees it, or <see langword="null"/>.</param>
public sealed record ConnectContext(
    string Client,
    string Transport,
    string? Token,
    AuthenticationResult Authentication,
    IReadOnlyDictionary<string, string> Headers,
    string? RemoteAddress);

/// <summary>What <see cref="IHeraldHandler.OnSubscribeAsync"/> is told.</summary>
/// <param name="Client">Who subscribes: user, client id, info.</param>
/// <param name="Transport">One of <see cref="HeraldTransportNames"/>.</param>
/// <param name="Channel">The channel, valid and readable by Herald's own rules.</param>
/// <param name="Authentication">The client's authentication (grants, expiry).</param>
public sealed record SubscribeContext(ClientInfo Client, string Transport, string Channel, AuthenticationResult Authentication);

/// <summary>What <see cref="IHeraldHandler.OnPublishAsync"/> is told.</summary>
/// <param name="Client">Who publishes.</param>
/// <param name="Transport">One of <see cref="HeraldTransportNames"/>.</param>
/// <param name="Channel">The channel.</param>
/// <param name="Data">The JSON payload the client sent (or the one a previous handler put in its place); undefined
/// (<c>default</c>) when the client published bytes (<see cref="Bytes"/>).</param>
/// <param name="Authentication">The client's authentication.</param>
public sealed record PublishContext(ClientInfo Client, string Transport, string Channel, JsonElement Data, AuthenticationResult Authentication)
{
    /// <summary>
    /// The bytes the client published (<c>"b64"</c>, or a MessagePack <c>bin</c>), or <see langword="null"/> for a JSON
    /// publication. A handler that answers <see cref="PublishAccepted"/> with <c>Data</c> publishes that JSON instead.
    /// </summary>
    public ReadOnlyMemory<byte>? Bytes { get; init; }
}

/// <summary>What <see cref="IHeraldHandler.OnRpcAsync"/> is told.</summary>
/// <param name="Client">Who calls.</param>
/// <param name="Transport">One of <see cref="HeraldTransportNames"/>.</param>
/// <param name="Method">The method name: 1–64 characters of <c>A-Z a-z 0-9 _ - . :</c>.</param>
/// <param name="Data">The call's <c>data</c>, or <see langword="null"/> when the client sent none.</param>
/// <param name="Authentication">The client's authentication.</param>
public sealed record RpcContext(ClientInfo Client, string Transport, string Method, JsonElement? Data, AuthenticationResult Authentication);

/// <summary>What <see cref="IHeraldHandler.OnDisconnectAsync"/> is told.</summary>
/// <param name="Client">Who left.</param>
/// <param name="Transport">One of <see cref="HeraldTransportNames"/>.</param>
/// <param name="Code">The WebSocket close code (<c>1000</c> normal, <c>1001</c> going away, <c>1006</c> dropped, <c>4xxx</c> Herald's).</param>
/// <param name="Reason">The close reason, possibly empty.</param>
public sealed record DisconnectContext(ClientInfo Client, string Transport, int Code, string Reason);

/// <summary>A subscription allowed by a handler.</summary>
/// <param name="Data">JSON attached to the subscribe reply as <c>data</c>, or <see langword="null"/>.</param>
public sealed record SubscribeAccepted(JsonElement? Data = null)
{
    /// <summary>Allowed, nothing attached.</summary>
    public static SubscribeAccepted Allow { get; } = new();
}

/// <summary>A publication allowed by a handler.</summary>
/// <param name="Data">The payload to publish in place of the client's, or <see langword="null"/> to keep it.</param>
public sealed record PublishAccepted(JsonElement? Data = null)
{
    /// <summary>Allowed as sent.</summary>
    public static PublishAccepted Unchanged { get; } = new();
}

/// <summary>A handler's answer to an RPC call.</summary>
/// <param name="Data">The JSON the client receives as <c>result.data</c>, or <see langword="null"/> for none.</param>
public sealed record RpcReply(JsonElement? Data = null);
