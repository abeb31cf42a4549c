using System.Text.Json;

namespace Herald.Protocol;

/// <summary>Pre-encoded property names of the wire protocol, so that hot paths never re-encode them.</summary>
internal static class ProtocolNames
{
    // Each name is its own documentation; docs/protocol.md describes the fields.
    public static readonly JsonEncodedText Id = JsonEncodedText.Encode("id");
    public static readonly JsonEncodedText Result = JsonEncodedText.Encode("result");
    public static readonly JsonEncodedText Error = JsonEncodedText.Encode("error");
    public static readonly JsonEncodedText Code = JsonEncodedText.Encode("code");
    public static readonly JsonEncodedText Message = JsonEncodedText.Encode("message");
    public static readonly JsonEncodedText Push = JsonEncodedText.Encode("push");
    public static readonly JsonEncodedText Channel = JsonEncodedText.Encode("channel");
    public static readonly JsonEncodedText Channels = JsonEncodedText.Encode("channels");
    public static readonly JsonEncodedText Pub = JsonEncodedText.Encode("pub");
    public static readonly JsonEncodedText Offset = JsonEncodedText.Encode("offset");
    public static readonly JsonEncodedText Epoch = JsonEncodedText.Encode("epoch");
    public static readonly JsonEncodedText Data = JsonEncodedText.Encode("data");
    public static readonly JsonEncodedText B64 = JsonEncodedText.Encode("b64");
    public static readonly JsonEncodedText Info = JsonEncodedText.Encode("info");
    public static readonly JsonEncodedText User = JsonEncodedText.Encode("user");
    public static readonly JsonEncodedText Client = JsonEncodedText.Encode("client");
    public static readonly JsonEncodedText Recovered = JsonEncodedText.Encode("recovered");
    public static readonly JsonEncodedText Publications = JsonEncodedText.Encode("publications");
    public static readonly JsonEncodedText Next = JsonEncodedText.Encode("next");
    public static readonly JsonEncodedText Presence = JsonEncodedText.Encode("presence");
    public static readonly JsonEncodedText Version = JsonEncodedText.Encode("version");
    public static readonly JsonEncodedText Ping = JsonEncodedText.Encode("ping");
    public static readonly JsonEncodedText Method = JsonEncodedText.Encode("method");
    public static readonly JsonEncodedText Connected = JsonEncodedText.Encode("connected");
    public static readonly JsonEncodedText Subscribed = JsonEncodedText.Encode("subscribed");
    public static readonly JsonEncodedText Close = JsonEncodedText.Encode("close");
    public static readonly JsonEncodedText Subscribe = JsonEncodedText.Encode("subscribe");
    public static readonly JsonEncodedText Unsubscribe = JsonEncodedText.Encode("unsubscribe");
    public static readonly JsonEncodedText Reason = JsonEncodedText.Encode("reason");
    public static readonly JsonEncodedText Skipped = JsonEncodedText.Encode("skipped");
    public static readonly JsonEncodedText From = JsonEncodedText.Encode("from");
    public static readonly JsonEncodedText To = JsonEncodedText.Encode("to");
}
