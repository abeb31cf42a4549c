// Error and close codes of the Herald protocol. They match src/Herald.Protocol/ErrorCodes.cs and CloseCodes.cs and the
// tables in docs/protocol.md ("Error codes", "Close codes"). Match on codes, never on messages.

/** The `code` of a command error (`{"id":…,"error":{"code":…,"message":…}}`) or of an HTTP error body. */
export const ErrorCodes = {
  /** The command is not valid JSON, or a field is missing or has the wrong type. */
  BadRequest: "bad_request",
  /** The `op` is not one the server knows. */
  UnknownOp: "unknown_op",
  /** A command other than `connect` arrived before a successful `connect`. */
  NotConnected: "not_connected",
  /** A second `connect` on a connection that is already connected. */
  AlreadyConnected: "already_connected",
  /** No valid credentials: a token is required, or the token or API key was refused. */
  Unauthorized: "unauthorized",
  /** The channel name breaks the naming rules or names an unknown namespace. */
  InvalidChannel: "invalid_channel",
  /** The client may not do this on this channel (for example publish where clients may not). */
  PermissionDenied: "permission_denied",
  /** The connection is already subscribed to the channel. */
  AlreadySubscribed: "already_subscribed",
  /** The connection is not subscribed to the channel. */
  NotSubscribed: "not_subscribed",
  /** The connection holds the maximum number of subscriptions. */
  TooManySubscriptions: "too_many_subscriptions",
  /** The feature (presence) is not enabled for the channel's namespace. */
  NotAvailable: "not_available",
  /** A position names an offset beyond the channel's current head in the current epoch. */
  InvalidPosition: "invalid_position",
  /** A history request's `since.epoch` is not the channel's current epoch. */
  EpochMismatch: "epoch_mismatch",
  /** The message or body is larger than the configured limit. */
  PayloadTooLarge: "payload_too_large",
  /** A browser page from an origin not in `Herald:AllowedOrigins`. */
  ForbiddenOrigin: "forbidden_origin",
  /** Too many requests; slow down. */
  RateLimited: "rate_limited",
  /** The server failed; the request may be retried. */
  Internal: "internal",
} as const;

/** One of the server's error codes. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Codes this client uses for problems it detects itself (they never come from the server). */
export const ClientErrorCodes = {
  /** A transport could not connect, or a connected transport failed (network error, unexpected close). */
  TransportFailed: "transport_failed",
  /** The client is disconnected (or was disconnected while the call was pending). */
  Disconnected: "disconnected",
  /** The server did not answer in time. */
  Timeout: "timeout",
  /** The server answered with something this client could not understand. */
  BadResponse: "bad_response",
  /** The client saw a gap in a channel's offsets and is resynchronising it. */
  Gap: "gap",
  /** An event listener threw. */
  ListenerError: "listener_error",
  /**
   * `switchTransport()` did not land: its one attempt failed (the client then falls back to its other transports), a
   * later switch superseded it, or the client is forced to another transport.
   */
  SwitchFailed: "switch_failed",
} as const;

/** One of the client's own error codes. */
export type ClientErrorCode = (typeof ClientErrorCodes)[keyof typeof ClientErrorCodes];

/** WebSocket close codes the server sends: RFC 6455 codes (1xxx) and Herald's own (4xxx). */
export const CloseCodes = {
  /** Normal closure (the client closed, or the server finished an orderly close). */
  Normal: 1000,
  /** The server is shutting down; reconnect (to another node) and recover. */
  GoingAway: 1001,
  /** The peer broke RFC 6455 framing. */
  ProtocolError: 1002,
  /** A binary message arrived; `herald.json` is text only. */
  UnsupportedData: 1003,
  /** A text message was not valid UTF-8. */
  InvalidPayload: 1007,
  /** A message exceeded `Herald:MaxMessageBytes`. */
  MessageTooBig: 1009,
  /** The server failed unexpectedly. */
  InternalError: 1011,
  /** No `connect` command arrived within `Herald:ConnectTimeout`. */
  ConnectTimeout: 4001,
  /** The connection's outbound queue overflowed (the client reads too slowly). Reconnect and recover. */
  SlowConsumer: 4002,
  /** The `connect` command was refused. Do not retry with the same credentials. */
  Unauthorized: 4003,
  /** The server could not keep a subscription gap-free. Reconnect and recover (expect `recovered: false`). */
  InsufficientState: 4004,
  /** The connection's token expired. Reconnect with a fresh token. */
  TokenExpired: 4005,
  /**
   * The application disconnected the user (`POST /api/disconnect`, `IHeraldServer.DisconnectAsync`), and the default
   * code of it. 4100–4499: reconnect (after the backoff) and recover.
   */
  ServerDisconnect: 4100,
  /** The first application code meaning "do not reconnect" (4500–4999): the client stops, as on a fatal refusal. */
  ServerDisconnectNoReconnect: 4500,
  /** The last application close code. */
  ServerDisconnectMax: 4999,
} as const;

/** One of the close codes above. */
export type CloseCode = (typeof CloseCodes)[keyof typeof CloseCodes];

/** An error from the server (a command error or an HTTP error body) or from the client itself. */
export class HeraldError extends Error {
  /** A server code ({@link ErrorCodes}) or a client code ({@link ClientErrorCodes}). */
  readonly code: string;
  /** The HTTP status, when the error came from an HTTP answer. */
  readonly status: number | undefined;
  /** The WebSocket close code, when the error came from a close. */
  readonly closeCode: number | undefined;

  constructor(code: string, message: string, details?: { status?: number; closeCode?: number; cause?: unknown }) {
    super(message, details?.cause === undefined ? undefined : { cause: details.cause });
    this.name = "HeraldError";
    this.code = code;
    this.status = details?.status;
    this.closeCode = details?.closeCode;
  }
}

/**
 * True for refusals of the connection after which reconnecting cannot help, because every attempt would send the same:
 * the credentials (`unauthorized`), the page's origin (`forbidden_origin`), or something over a server limit
 * (`payload_too_large`: the `info` option over `Herald:MaxClientInfoBytes`, or a poll body over
 * `Herald:MaxMessageBytes`, which needs limits changed from their defaults); and a close by the application with a
 * "do not reconnect" code (4500–4999, {@link isNoReconnect}). The client stops on them instead of
 * going round its transports forever.
 */
export function isFatal(error: HeraldError): boolean {
  return (
    error.code === ErrorCodes.Unauthorized ||
    error.code === ErrorCodes.ForbiddenOrigin ||
    error.code === ErrorCodes.PayloadTooLarge ||
    error.closeCode === CloseCodes.Unauthorized ||
    isNoReconnect(error.closeCode)
  );
}

/** True for the close codes with which the application says "do not reconnect" (4500–4999). */
export function isNoReconnect(closeCode: number | undefined): boolean {
  return closeCode !== undefined && closeCode >= CloseCodes.ServerDisconnectNoReconnect && closeCode <= CloseCodes.ServerDisconnectMax;
}

/**
 * True for refusals of one command that say "not now" rather than "no": the connection's command rate (`rate_limited`)
 * or a failure inside the server (`internal`). A subscription refused so stays and is asked for again after a backoff.
 */
export function isTransient(error: HeraldError): boolean {
  return error.code === ErrorCodes.RateLimited || error.code === ErrorCodes.Internal;
}
