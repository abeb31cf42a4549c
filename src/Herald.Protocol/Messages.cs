using System.Text.Json;
using System.Text.Json.Serialization;

namespace Herald.Protocol;

// The server → client shapes of the herald.json protocol (docs/protocol.md). The server writes them on its hot paths
// with ProtocolWriter and cached publication bytes; these types declare the same shapes once, for the .NET client and
// any other reader. The JSON names are the wire: never rename them.

/// <summary>
/// One server → client message: a command reply <c>{"id":…,"result":{…}}</c> or <c>{"id":…,"error":{…}}</c>, or a
/// push <c>{"push":{…}}</c>. Also the body of a <c>POST /cmd</c> answer.
/// </summary>
public sealed class ServerMessage
{
    /// <summary>The id of the command this replies to; absent on pushes and on errors for unreadable commands.</summary>
    [JsonPropertyName("id")] public long? Id { get; set; }

    /// <summary>
    /// The command's result, whose shape depends on the operation (<see cref="ConnectAnswerMessage"/>,
    /// <see cref="StreamResultMessage"/>, <see cref="PresenceAnswerMessage"/>, or an empty object).
    /// </summary>
    [JsonPropertyName("result")] public JsonElement? Result { get; set; }

    /// <summary>Why the command was refused; present instead of <see cref="Result"/>.</summary>
    [JsonPropertyName("error")] public ErrorBody? Error { get; set; }

    /// <summary>A publication pushed to a subscribed connection.</summary>
    [JsonPropertyName("push")] public PushMessage? Push { get; set; }

    /// <summary>The first message of a Server-Sent Events stream: what <c>connect</c> would have answered.</summary>
    [JsonPropertyName("connected")] public ConnectAnswerMessage? Connected { get; set; }

    /// <summary>On a Server-Sent Events stream, one channel's subscription: its position and the publications recovered.</summary>
    [JsonPropertyName("subscribed")] public SubscribedMessage? Subscribed { get; set; }

    /// <summary>The last message of a Server-Sent Events stream the server ends, with the code a WebSocket would close with.</summary>
    [JsonPropertyName("close")] public CloseMessage? Close { get; set; }
}

/// <summary>
/// One channel's subscription on a Server-Sent Events stream, <c>{"channel":…,"epoch":…,"offset":…,"recovered":…,"publications":[…]}</c>:
/// the <see cref="StreamResultMessage"/> a <c>subscribe</c> would have answered, naming its channel.
/// </summary>
public sealed class SubscribedMessage
{
    /// <summary>The channel.</summary>
    [JsonPropertyName("channel")] public string? Channel { get; set; }

    /// <summary>The channel log's current epoch.</summary>
    [JsonPropertyName("epoch")] public string? Epoch { get; set; }

    /// <summary>The channel's head.</summary>
    [JsonPropertyName("offset")] public ulong Offset { get; set; }

    /// <summary>Present when a cursor was given: whether <see cref="Publications"/> continue it without a gap.</summary>
    [JsonPropertyName("recovered")] public bool? Recovered { get; set; }

    /// <summary>The publications after the cursor, in offset order.</summary>
    [JsonPropertyName("publications")] public IReadOnlyList<PublicationMessage>? Publications { get; set; }

    /// <summary>Conflated channels: the offsets after the cursor skipped in favour of the newest publication (see <see cref="StreamResultMessage.Skipped"/>).</summary>
    [JsonPropertyName("skipped")] public SkippedMessage? Skipped { get; set; }

    /// <summary>What the application's subscribe handler attached, if anything.</summary>
    [JsonPropertyName("data")] public JsonElement? Data { get; set; }
}

/// <summary>Why a stream ended, <c>{"code":…,"reason":…}</c>: a <see cref="CloseCodes"/> value and a human-readable reason.</summary>
public sealed class CloseMessage
{
    /// <summary>One of <see cref="CloseCodes"/>.</summary>
    [JsonPropertyName("code")] public int Code { get; set; }

    /// <summary>For humans and logs; never parse it.</summary>
    [JsonPropertyName("reason")] public string? Reason { get; set; }
}

/// <summary>An error <c>{"code":…,"message":…}</c>, in a command reply or an HTTP error body.</summary>
public sealed class ErrorBody
{
    /// <summary>One of <see cref="ErrorCodes"/>.</summary>
    [JsonPropertyName("code")] public string? Code { get; set; }

    /// <summary>A human-readable explanation, for logs; never parse it.</summary>
    [JsonPropertyName("message")] public string? Message { get; set; }
}

/// <summary>The body of an HTTP error answer (<c>/poll</c>, <c>/api/…</c>, refused upgrades): <c>{"error":{…}}</c>.</summary>
public sealed class HttpErrorBody
{
    /// <summary>The error.</summary>
    [JsonPropertyName("error")] public ErrorBody? Error { get; set; }
}

/// <summary>
/// A push <c>{"channel":…,"pub":{…}}</c>: one publication of a channel the connection is subscribed to; or, from the
/// server's side, <c>{"channel":…,"subscribe":{…}}</c> (the server subscribed the connection) or
/// <c>{"channel":…,"unsubscribe":{…}}</c> (the server unsubscribed it). Exactly one of them is present.
/// </summary>
public sealed class PushMessage
{
    /// <summary>The channel the push is about.</summary>
    [JsonPropertyName("channel")] public string? Channel { get; set; }

    /// <summary>The publication; its epoch is the one of the subscription's last reply (or subscribe push).</summary>
    [JsonPropertyName("pub")] public PublicationMessage? Pub { get; set; }

    /// <summary>
    /// The server subscribed the connection to the channel: its position (and, when the server gave a cursor,
    /// <c>recovered</c> and the publications after it), as in a subscribe reply. Publications follow as <c>pub</c> pushes.
    /// </summary>
    [JsonPropertyName("subscribe")] public StreamResultMessage? Subscribe { get; set; }

    /// <summary>The server unsubscribed the connection from the channel; no more publications of it follow.</summary>
    [JsonPropertyName("unsubscribe")] public UnsubscribePushMessage? Unsubscribe { get; set; }

    /// <summary>
    /// A conflated channel's subscriber fell behind: these offsets were replaced by a newer publication and will not be
    /// sent; the <c>pub</c> push of <see cref="SkippedMessage.To"/> + 1 follows. The cursor moves to <c>to</c>.
    /// </summary>
    [JsonPropertyName("skipped")] public SkippedMessage? Skipped { get; set; }
}

/// <summary>
/// Offsets of a conflated channel that the client was not sent, <c>{"from":…,"to":…}</c> (both included): a newer
/// publication replaced them. Not a loss to recover: the channel carries latest values.
/// </summary>
public sealed class SkippedMessage
{
    /// <summary>The first offset skipped.</summary>
    [JsonPropertyName("from")] public ulong From { get; set; }

    /// <summary>The last offset skipped.</summary>
    [JsonPropertyName("to")] public ulong To { get; set; }
}

/// <summary>The body of an unsubscribe push, <c>{"reason":…}</c>.</summary>
public sealed class UnsubscribePushMessage
{
    /// <summary>Why, in words for logs (the application's reason, or <c>"unsubscribed by the server"</c>); never parse it.</summary>
    [JsonPropertyName("reason")] public string? Reason { get; set; }
}

/// <summary>
/// A publication on the wire, <c>{"offset":…,"data":…,"info":{…}}</c>, or <c>"b64":"…"</c> in place of <c>"data"</c> for
/// bytes (see <see cref="Publication.Json"/>).
/// </summary>
public sealed class PublicationMessage
{
    /// <summary>Its offset in the channel's log, within the epoch of the message that carries it.</summary>
    [JsonPropertyName("offset")] public ulong Offset { get; set; }

    /// <summary>The payload, exactly as the publisher sent it; absent (undefined) for bytes, which are in <see cref="B64"/>.</summary>
    [JsonPropertyName("data")] public JsonElement Data { get; set; }

    /// <summary>The payload of a binary publication (<c>"b64"</c> on the wire), or <see langword="null"/> for a JSON one.</summary>
    [JsonPropertyName("b64")] public byte[]? B64 { get; set; }

    /// <summary>Who published it (<see cref="ClientInfoMessage.User"/> and <see cref="ClientInfoMessage.Client"/> only); absent for the server API.</summary>
    [JsonPropertyName("info")] public ClientInfoMessage? Info { get; set; }
}

/// <summary>
/// A client on the wire, <c>{"user":…,"client":…,"info":{…}}</c>: a publication's publisher (without <c>info</c>) or
/// a presence entry (see <see cref="ClientInfo"/>).
/// </summary>
public sealed class ClientInfoMessage
{
    /// <summary>The user; empty for anonymous clients.</summary>
    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>The connection's server-assigned id, or the id a polling client polls with.</summary>
    [JsonPropertyName("client")] public string? Client { get; set; }

    /// <summary>The client's display information (a JSON object), in presence entries only and only when it has one.</summary>
    [JsonPropertyName("info")] public JsonElement? Info { get; set; }
}

/// <summary>
/// A channel's position and the publications after a cursor, <c>{"epoch":…,"offset":…,"recovered":…,"publications":[…]}</c>:
/// the result of <c>subscribe</c>, <c>history</c> and <c>publish</c> (position only), and each channel of a
/// <see cref="PollAnswerMessage"/>.
/// </summary>
public sealed class StreamResultMessage
{
    /// <summary>The channel log's current epoch.</summary>
    [JsonPropertyName("epoch")] public string? Epoch { get; set; }

    /// <summary>
    /// The channel's head (<c>subscribe</c>, <c>history</c>), the new publication's offset (<c>publish</c>), or, in a
    /// poll answer, the cursor to send next: the last publication included, which is the head unless the batch was cut.
    /// </summary>
    [JsonPropertyName("offset")] public ulong Offset { get; set; }

    /// <summary>
    /// Present when a cursor was given: <see langword="true"/> when <see cref="Publications"/> continue it without a
    /// gap, <see langword="false"/> when the publications after it are gone (or its epoch ended) for good.
    /// </summary>
    [JsonPropertyName("recovered")] public bool? Recovered { get; set; }

    /// <summary>The publications after the cursor, in offset order (a reversed <c>history</c>: before it, newest first).</summary>
    [JsonPropertyName("publications")] public IReadOnlyList<PublicationMessage>? Publications { get; set; }

    /// <summary>
    /// Conflated channels (subscribe, polls): the offsets after the cursor that were not returned because
    /// <see cref="Publications"/> holds the newest one in their place; absent when nothing was skipped.
    /// </summary>
    [JsonPropertyName("skipped")] public SkippedMessage? Skipped { get; set; }

    /// <summary>
    /// <c>history</c> only: where the next page starts, to send as its <c>since</c> with the same <c>reverse</c>; absent
    /// when history holds nothing more in that direction.
    /// </summary>
    [JsonPropertyName("next")] public SincePosition? Next { get; set; }
}

/// <summary>The answer to a poll (<c>GET</c> or <c>POST /poll</c>): <c>{"channels":{"&lt;channel&gt;":{…},…}}</c>.</summary>
public sealed class PollAnswerMessage
{
    /// <summary>Each polled channel's position and new publications, keyed by channel name.</summary>
    [JsonPropertyName("channels")] public IReadOnlyDictionary<string, StreamResultMessage>? Channels { get; set; }
}

/// <summary>The result of <c>presence</c>: <c>{"presence":{"&lt;client&gt;":{…},…}}</c>.</summary>
public sealed class PresenceAnswerMessage
{
    /// <summary>The clients present in the channel on the answering node, keyed by client id.</summary>
    [JsonPropertyName("presence")] public IReadOnlyDictionary<string, ClientInfoMessage>? Presence { get; set; }
}

/// <summary>The result of <c>connect</c>: <c>{"client":…,"user":…,"version":…,"ping":…}</c>.</summary>
public sealed class ConnectAnswerMessage
{
    /// <summary>The connection's server-assigned id.</summary>
    [JsonPropertyName("client")] public string? Client { get; set; }

    /// <summary>The authenticated user; empty for anonymous clients.</summary>
    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>The server's version.</summary>
    [JsonPropertyName("version")] public string? Version { get; set; }

    /// <summary>The server's keep-alive interval (<c>Herald:KeepAliveInterval</c>) in whole seconds; 0 when keep-alive is off.</summary>
    [JsonPropertyName("ping")] public double? Ping { get; set; }
}
