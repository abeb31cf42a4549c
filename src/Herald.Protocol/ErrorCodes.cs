namespace Herald.Protocol;

/// <summary>
/// The error codes of command replies (<c>{"id":…,"error":{"code":…,"message":…}}</c>) and of HTTP error bodies.
/// Every code here is documented in <c>docs/protocol.md</c>; never inline a code string elsewhere.
/// </summary>
public static class ErrorCodes
{
    /// <summary>The command is not valid JSON, or a field is missing or has the wrong type.</summary>
    public const string BadRequest = "bad_request";

    /// <summary>The <c>op</c> is not one the server knows.</summary>
    public const string UnknownOp = "unknown_op";

    /// <summary>A command other than <c>connect</c> arrived before a successful <c>connect</c>.</summary>
    public const string NotConnected = "not_connected";

    /// <summary>A second <c>connect</c> on a connection that is already connected.</summary>
    public const string AlreadyConnected = "already_connected";

    /// <summary>No valid credentials: a token is required, or the token or API key was refused.</summary>
    public const string Unauthorized = "unauthorized";

    /// <summary>The channel name breaks the naming rules or names an unknown namespace.</summary>
    public const string InvalidChannel = "invalid_channel";

    /// <summary>The client may not do this on this channel (for example publish where clients may not).</summary>
    public const string PermissionDenied = "permission_denied";

    /// <summary>The connection is already subscribed to the channel.</summary>
    public const string AlreadySubscribed = "already_subscribed";

    /// <summary>The connection is not subscribed to the channel.</summary>
    public const string NotSubscribed = "not_subscribed";

    /// <summary>The connection holds the maximum number of subscriptions.</summary>
    public const string TooManySubscriptions = "too_many_subscriptions";

    /// <summary>
    /// The feature is not there: presence is not enabled for the channel's namespace, or no application handler answers
    /// the <c>rpc</c> method.
    /// </summary>
    public const string NotAvailable = "not_available";

    /// <summary>A position names an offset beyond the channel's current head in the current epoch.</summary>
    public const string InvalidPosition = "invalid_position";

    /// <summary>A history request's <c>since.epoch</c> is not the channel's current epoch.</summary>
    public const string EpochMismatch = "epoch_mismatch";

    /// <summary>The message or body is larger than the configured limit.</summary>
    public const string PayloadTooLarge = "payload_too_large";

    /// <summary>A browser page from an origin not in <c>Herald:AllowedOrigins</c>.</summary>
    public const string ForbiddenOrigin = "forbidden_origin";

    /// <summary>Too many requests; slow down.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>The server failed; the request may be retried.</summary>
    public const string Internal = "internal";

    /// <summary>A dependency the server needs (the broker, e.g. Redis) cannot be reached; retry later. HTTP 503.</summary>
    public const string Unavailable = "unavailable";
}
