namespace Herald.Protocol;

/// <summary>The names of the client → server operations.</summary>
public static class Ops
{
    /// <summary>Authenticate the connection; must come first.</summary>
    public const string Connect = "connect";
    /// <summary>Start receiving a channel's publications, optionally recovering from a position.</summary>
    public const string Subscribe = "subscribe";
    /// <summary>Stop receiving a channel's publications.</summary>
    public const string Unsubscribe = "unsubscribe";
    /// <summary>Append a publication to a channel.</summary>
    public const string Publish = "publish";
    /// <summary>Read a channel's history window.</summary>
    public const string History = "history";
    /// <summary>List the clients present in a channel.</summary>
    public const string Presence = "presence";
    /// <summary>Replace the connection's token before it expires, keeping its subscriptions.</summary>
    public const string Refresh = "refresh";
    /// <summary>Round-trip check.</summary>
    public const string Ping = "ping";
    /// <summary>Call a method the application's handler answers (<c>method</c>, <c>data</c>).</summary>
    public const string Rpc = "rpc";
}
