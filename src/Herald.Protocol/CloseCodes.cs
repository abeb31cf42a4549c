namespace Herald.Protocol;

/// <summary>
/// WebSocket close codes the server sends. RFC 6455 codes (1xxx) for protocol-level problems, Herald's own codes
/// (4xxx) for application-level ones. Every code is documented in <c>docs/protocol.md</c>.
/// </summary>
public static class CloseCodes
{
    /// <summary>Normal closure (the client closed, or the server finished an orderly close).</summary>
    public const int Normal = 1000;

    /// <summary>The server is shutting down; reconnect (to another node) and recover.</summary>
    public const int GoingAway = 1001;

    /// <summary>The peer broke RFC 6455 framing (bad opcode, reserved bits, unmasked frame, …).</summary>
    public const int ProtocolError = 1002;

    /// <summary>A binary message arrived; Herald's <c>herald.json</c> protocol is text only.</summary>
    public const int UnsupportedData = 1003;

    /// <summary>A text message was not valid UTF-8.</summary>
    public const int InvalidPayload = 1007;

    /// <summary>A message (or a frame's announced length) exceeded <c>Herald:MaxMessageBytes</c>.</summary>
    public const int MessageTooBig = 1009;

    /// <summary>The server failed unexpectedly.</summary>
    public const int InternalError = 1011;

    /// <summary>No <c>connect</c> command arrived within <c>Herald:ConnectTimeout</c>.</summary>
    public const int ConnectTimeout = 4001;

    /// <summary>
    /// The connection's outbound queue passed <c>Herald:MaxQueuedMessages</c> or <c>Herald:MaxQueuedBytes</c>
    /// because the client reads too slowly. Reconnect and recover with <c>since</c>.
    /// </summary>
    public const int SlowConsumer = 4002;

    /// <summary>The <c>connect</c> command was refused (no token where one is required, or a bad token).</summary>
    public const int Unauthorized = 4003;

    /// <summary>The server could not keep a subscription gap-free (its log changed epoch). Reconnect and recover.</summary>
    public const int InsufficientState = 4004;

    /// <summary>The connection's token expired and no <c>refresh</c> came in time. Reconnect with a fresh token.</summary>
    public const int TokenExpired = 4005;

    /// <summary>
    /// The first code the application may close a connection with (<c>IHeraldServer.DisconnectAsync</c>,
    /// <c>POST /api/disconnect</c>), and its default: "disconnected by the server; reconnect". Codes
    /// 4100–4499 tell clients to reconnect (after their backoff) and recover; 4000–4099 are Herald's own.
    /// </summary>
    public const int ServerDisconnect = 4100;

    /// <summary>
    /// The first application code that tells clients not to reconnect (4500–4999): the application ended the
    /// connection for good (a banned user, a logged-out session). The clients stop and report it.
    /// </summary>
    public const int ServerDisconnectNoReconnect = 4500;

    /// <summary>The last application close code.</summary>
    public const int ServerDisconnectMax = 4999;

    /// <summary>Whether <paramref name="code"/> is one the application may close connections with (4100–4999).</summary>
    public static bool IsApplicationCode(int code) => code is >= ServerDisconnect and <= ServerDisconnectMax;

    /// <summary>Whether a client closed with <paramref name="code"/> must not reconnect (4500–4999).</summary>
    public static bool IsNoReconnect(int code) => code is >= ServerDisconnectNoReconnect and <= ServerDisconnectMax;
}
