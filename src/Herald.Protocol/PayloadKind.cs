namespace Herald.Protocol;

/// <summary>What a publication's data is: JSON, or bytes the server never reads.</summary>
public enum PayloadKind
{
    /// <summary>UTF-8 JSON: <c>"data"</c> in <c>herald.json</c>, a MessagePack value converted from it in <c>herald.msgpack</c>.</summary>
    Json = 0,

    /// <summary>Opaque bytes: <c>"b64"</c> (base64) in <c>herald.json</c> and polls, a MessagePack <c>bin</c> in <c>herald.msgpack</c>.</summary>
    Binary = 1,
}
