namespace Herald.Protocol;

/// <summary>How a persistent connection encodes its messages: its WebSocket subprotocol.</summary>
internal enum WireEncoding
{
    /// <summary><c>herald.json</c>: text frames, one JSON object per line.</summary>
    Json,

    /// <summary><c>herald.msgpack</c>: binary frames, MessagePack maps back to back.</summary>
    MsgPack,
}

/// <summary>
/// One publication's push, encoded at most once per encoding, whatever the number of subscribers: the fan-out passes it
/// by reference to every subscriber, and each takes the encoding its connection speaks.
/// </summary>
internal struct PushFrames(string channel, Publication publication)
{
    private byte[]? _json;
    private byte[]? _msgPack;

    public byte[] For(WireEncoding encoding) => encoding == WireEncoding.MsgPack
        ? _msgPack ??= MsgPackCodec.EncodePush(channel, publication)
        : _json ??= ProtocolWriter.EncodePush(channel, publication);

    /// <summary>One push for one subscriber (a catch-up, which is one client's recovery, not a fan-out).</summary>
    public static byte[] Encode(string channel, Publication publication, WireEncoding encoding) => encoding == WireEncoding.MsgPack
        ? MsgPackCodec.EncodePush(channel, publication)
        : ProtocolWriter.EncodePush(channel, publication);
}
