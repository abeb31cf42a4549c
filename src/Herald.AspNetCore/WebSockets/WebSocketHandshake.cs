using System.Security.Cryptography;
using System.Text;
using Herald.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;

namespace Herald.AspNetCore.WebSockets;

/// <summary>
/// The server side of the RFC 6455 opening handshake. Herald answers it itself (instead of through
/// <c>UseWebSockets()</c>) so that it owns the raw stream and can put <see cref="FrameGuardStream"/> under the WebSocket.
/// </summary>
internal static class WebSocketHandshake
{
    /// <summary>The JSON subprotocol, and the default when the client offers none.</summary>
    public const string SubProtocol = "herald.json";

    /// <summary>The MessagePack subprotocol.</summary>
    public const string MsgPackSubProtocol = "herald.msgpack";

    /// <summary>The encoding a negotiated subprotocol (or none) stands for.</summary>
    public static WireEncoding EncodingOf(string? subProtocol) =>
        subProtocol == MsgPackSubProtocol ? WireEncoding.MsgPack : WireEncoding.Json;

    private const string AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    /// <summary>
    /// Validates the request. On success returns the subprotocol to select (null when the client offered none);
    /// on failure writes the refusal and returns <see langword="false"/>.
    /// </summary>
    public static async Task<(bool Ok, string? SubProtocol, string? Key)> ValidateAsync(HttpContext context)
    {
        var request = context.Request;
        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        if (!HttpMethods.IsGet(request.Method) || upgrade is not { IsUpgradableRequest: true }
            || !HasToken(request.Headers.Upgrade, "websocket") || !HasToken(request.Headers.Connection, "upgrade"))
        {
            context.Response.Headers.Upgrade = "websocket";
            context.Response.Headers.Connection = "Upgrade";
            context.Response.Headers.SecWebSocketVersion = "13";
            await HttpErrors.WriteAsync(context, StatusCodes.Status426UpgradeRequired, ErrorCodes.BadRequest,
                "this endpoint speaks WebSocket only: send a GET with 'Upgrade: websocket' (RFC 6455)");
            return default;
        }
        if (request.Headers.SecWebSocketVersion != "13")
        {
            context.Response.Headers.SecWebSocketVersion = "13";
            await HttpErrors.WriteAsync(context, StatusCodes.Status426UpgradeRequired, ErrorCodes.BadRequest,
                "unsupported Sec-WebSocket-Version; this server speaks version 13");
            return default;
        }
        var key = request.Headers.SecWebSocketKey.ToString();
        if (!IsValidKey(key))
        {
            await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest,
                "Sec-WebSocket-Key must be 16 bytes in base64");
            return default;
        }
        var offered = request.Headers.SecWebSocketProtocol;
        if (offered.Count == 0)
        {
            return (true, null, key);
        }
        foreach (var value in offered)
        {
            foreach (var protocol in (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                // The client's order is its preference: the first one Herald speaks wins.
                if (protocol is SubProtocol or MsgPackSubProtocol)
                {
                    return (true, protocol, key);
                }
            }
        }
        await HttpErrors.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest,
            $"unsupported subprotocol; this server speaks '{SubProtocol}' and '{MsgPackSubProtocol}' (or none, for '{SubProtocol}')");
        return default;
    }

    /// <summary>Sends the 101 answer and returns the raw, upgraded stream.</summary>
    public static Task<Stream> AcceptAsync(HttpContext context, string key, string? subProtocol)
    {
        var headers = context.Response.Headers;
        headers.Connection = "Upgrade";
        headers.Upgrade = "websocket";
        headers.SecWebSocketAccept = ComputeAccept(key);
        if (subProtocol is not null)
        {
            headers.SecWebSocketProtocol = subProtocol;
        }
        return context.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
    }

    // RFC 6455 fixes SHA-1 for the accept header; it is a handshake checksum, not a security control.
#pragma warning disable CA5350
    internal static string ComputeAccept(string key) =>
        Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + AcceptGuid)));
#pragma warning restore CA5350

    private static bool IsValidKey(string key)
    {
        Span<byte> decoded = stackalloc byte[24];
        return key.Length == 24 && Convert.TryFromBase64String(key, decoded, out var written) && written == 16;
    }

    private static bool HasToken(StringValues values, string token)
    {
        foreach (var value in values)
        {
            foreach (var part in (value ?? "").Split(',', StringSplitOptions.TrimEntries))
            {
                if (string.Equals(part, token, StringComparison.OrdinalIgnoreCase))
                {
                    return true;
                }
            }
        }
        return false;
    }
}
