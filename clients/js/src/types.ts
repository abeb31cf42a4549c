import type { HeraldError } from "./codes.js";
import type { Subscription } from "./subscription.js";

/** The client's connection state. */
export const ConnectionState = {
  Disconnected: "disconnected",
  Connecting: "connecting",
  Connected: "connected",
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/** The transports, in the default order of preference. */
export const TransportName = {
  WebSocket: "websocket",
  Sse: "sse",
  LongPoll: "longpoll",
  Poll: "poll",
} as const;
export type TransportName = (typeof TransportName)[keyof typeof TransportName];

/** A position in a channel's log: the last offset seen, inside an epoch. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** Who published (absent for publications made through the server API). */
export interface ClientInfo {
  user: string;
  client: string;
}

/** Display information for presence: any JSON object (the server limits its size, 1 KiB by default). */
export type PresenceInfo = Record<string, unknown>;

/** A client present in a channel. */
export interface PresenceEntry extends ClientInfo {
  /** Its display information: the token's `info` claim, else what the client sent; absent when neither. */
  info?: PresenceInfo;
}

/** One publication of a channel. */
export interface Publication {
  offset: number;
  /** The JSON value, parsed; `undefined` for a binary publication. */
  data: unknown;
  /** Whether the payload is bytes (published as bytes) rather than JSON. */
  binary: boolean;
  /** The payload as bytes: a binary publication's bytes exactly as published, or a JSON one's UTF-8 JSON text. */
  bytes: Uint8Array;
  info?: ClientInfo;
}

/** A publication as the wire carries it: `data` (JSON, or a `bin` over herald.msgpack) or `b64` (bytes in JSON). */
export interface WirePublication {
  offset: number;
  data?: unknown;
  b64?: string;
  info?: ClientInfo;
}

/** The WebSocket's encoding: `json` (`herald.json`, the default) or `msgpack` (`herald.msgpack`). */
export type Protocol = "json" | "msgpack";

/** The `publication` event: a publication, with its channel and epoch. */
export interface PublicationEvent extends Publication {
  channel: string;
  epoch: string;
}

/** The `state` event. */
export interface StateEvent {
  state: ConnectionState;
  /** The transport in use (connected) or being tried (connecting); null when disconnected. */
  transport: TransportName | null;
  previous: ConnectionState;
}

/** The `recovery` event: recovery was impossible; publications between the old and the new position are lost. */
export interface RecoveryEvent {
  channel: string;
  recovered: false;
  /** The channel's current epoch. */
  epoch: string;
  /** The position the subscription continues from. */
  offset: number;
  /** The position the client asked to recover from. */
  since: StreamPosition;
}

/**
 * The `skipped` event: on a conflated channel (a namespace with `Conflate`), the client fell behind and the server sent
 * the newest publication in place of offsets `from` to `to` (both included). They are skipped by design, not lost: the
 * subscription's cursor has moved to `to`, and the publication after it follows.
 */
export interface SkippedEvent {
  channel: string;
  epoch: string;
  /** The first offset skipped. */
  from: number;
  /** The last offset skipped. */
  to: number;
}

/** Offsets of a conflated channel the server did not send (`"skipped":{"from":…,"to":…}` on the wire). */
export interface SkippedRange {
  from: number;
  to: number;
}

/** The `error` event. */
export interface ErrorEvent {
  error: HeraldError;
  transport: TransportName | null;
  /** The channel concerned, if any. */
  channel?: string;
}

/**
 * The `serverSubscribed` and `serverUnsubscribed` events: the server subscribed this client to a channel (a new
 * subscription, `serverSide` true, resumed after reconnects like the client's own) or unsubscribed it (ended).
 */
export interface ServerSubscriptionEvent {
  channel: string;
  subscription: Subscription;
  /** Why the server unsubscribed the client (for logs); absent on subscribe. */
  reason?: string;
}

/** The typed event map of {@link HeraldClient}. */
export interface HeraldEventMap {
  state: StateEvent;
  publication: PublicationEvent;
  recovery: RecoveryEvent;
  skipped: SkippedEvent;
  error: ErrorEvent;
  serverSubscribed: ServerSubscriptionEvent;
  serverUnsubscribed: ServerSubscriptionEvent;
}

/** The events of a {@link Subscription}. */
export interface SubscriptionEventMap {
  publication: PublicationEvent;
  subscribed: { channel: string; position: StreamPosition };
  /** The server ended the subscription (an unsubscribe push). */
  unsubscribed: { channel: string; reason: string };
  recovery: RecoveryEvent;
  skipped: SkippedEvent;
  error: ErrorEvent;
}

/** The constructor of a WebSocket: the browser's, Node 22's global one, or the `ws` package's. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** The part of the WebSocket API the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  binaryType?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** The constructor of an EventSource: the browser's, or the `eventsource` package's in Node. */
export interface EventSourceConstructor {
  new (url: string): EventSourceLike;
}

/** The part of the EventSource API the client uses. */
export interface EventSourceLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  close(): void;
}

/** Options of {@link HeraldClient}. */
export interface HeraldClientOptions {
  /** A JWT: sent in `connect` on the WebSocket and as `Authorization: Bearer` over HTTP. */
  token?: string;
  /**
   * Display information shown as `info` in this client's presence entries (e.g. `{ name: "Ana" }`): sent with
   * `connect` and with every poll. Untrusted: a token's `info` claim, when present, is shown instead.
   */
  info?: PresenceInfo;
  /**
   * The WebSocket's subprotocol: `json` (`herald.json`, the default) or `msgpack` (`herald.msgpack`: bytes travel as
   * they are, frames are smaller). SSE and polling speak JSON whatever this says.
   */
  protocol?: Protocol;
  /** The transports to try, in order. Default: websocket, sse, longpoll, poll. */
  transports?: TransportName[];
  /** Use only this transport (overrides `transports`). */
  transport?: TransportName;
  /** Short polling: milliseconds between polls. Default 1000. */
  pollInterval?: number;
  /** Long polling: seconds the server may hold a poll. Default 25 (the server's cap is 30). */
  longPollWait?: number;
  /** Reconnection backoff: the first delay in ms (default 500); it doubles up to `maxReconnectDelay`, with jitter. */
  minReconnectDelay?: number;
  /** Reconnection backoff: the largest delay in ms. Default 20000. */
  maxReconnectDelay?: number;
  /** Milliseconds to wait for a transport to connect, and for a command's reply. Default 10000. */
  timeout?: number;
  /** The WebSocket constructor; default `globalThis.WebSocket` (Node 20 has none: pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /** The fetch function; default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** The EventSource constructor for the `sse` transport; default `globalThis.EventSource` (Node has none: pass the `eventsource` package's). */
  EventSource?: EventSourceConstructor;
}

/** Options of {@link HeraldClient.history}. */
export interface HistoryOptions {
  /**
   * The cursor: return the publications after this position, oldest first (with `reverse`, before it, newest first).
   * Without it, the newest `limit`. A page's `next` is the cursor of the page after it.
   */
  since?: StreamPosition;
  /** At most this many publications (1..1000 by default). */
  limit?: number;
  /** Read newest first. */
  reverse?: boolean;
}

/** The result of `history`: the channel's head and a page of publications. */
export interface HistoryResult {
  epoch: string;
  offset: number;
  publications: Publication[];
  /**
   * Where the next page in the same direction starts: pass it as `since` with the same `reverse`. Absent when history
   * holds nothing more that way (forward: nothing newer yet).
   */
  next?: StreamPosition;
}

/** Options of {@link HeraldClient.publish}. */
export interface PublishOptions {
  /**
   * Makes the publish safe to retry: a repeat with the same key on the same channel within the server's
   * `IdempotencyWindow` (5 minutes by default) publishes nothing and resolves with the first publication's position.
   * 1-128 characters of `A-Z a-z 0-9 _ - . : + / =`, for example `crypto.randomUUID()`.
   */
  idempotencyKey?: string;
}

/** The result of `publish`: the publication's position. */
export interface PublishResult {
  epoch: string;
  offset: number;
}

/** The result of `presence`: the clients present, keyed by client id. */
export type PresenceResult = Record<string, PresenceEntry>;

/** A subscribe reply or a poll answer's channel entry. */
export interface ChannelEntry {
  epoch: string;
  offset: number;
  recovered?: boolean;
  publications: WirePublication[];
  /** Conflated channels: the offsets after the cursor left out for the newest publication. */
  skipped?: SkippedRange;
}

/** A command as sent on the wire (without `id`). */
export interface Command {
  op: string;
  channel?: string;
  method?: string;
  since?: StreamPosition;
  data?: unknown;
  b64?: string;
  limit?: number;
  reverse?: boolean;
  idempotency_key?: string;
  token?: string;
  info?: PresenceInfo;
  client?: string;
}

/** Why a transport closed. */
export interface TransportCloseInfo {
  error: HeraldError;
}

/** What a transport needs from the client. */
export interface TransportHost {
  readonly token: string | undefined;
  /** This client's id, sent with polls so that the server lists a polling client in presence. */
  readonly clientId: string;
  /** Display information for presence, sent with `connect` and polls. */
  readonly info: PresenceInfo | undefined;
  readonly timeout: number;
  /** The channels to receive and their cursors (undefined: no cursor yet). */
  channels(): Map<string, StreamPosition | undefined>;
  /** A subscribe reply (WebSocket) or a poll answer's entry for a channel. */
  onEntry(channel: string, entry: ChannelEntry, since: StreamPosition | undefined): void;
  /** A live publication (WebSocket push). */
  onPush(channel: string, pub: WirePublication): void;
  /** A conflated channel's skip notice (WebSocket and SSE push): the publication after `skipped.to` follows. */
  onSkipped(channel: string, skipped: SkippedRange): void;
  /** The server subscribed this connection to a channel (WebSocket subscribe push). */
  onServerSubscribe(channel: string, entry: ChannelEntry): void;
  /** The server unsubscribed this connection from a channel (WebSocket unsubscribe push). */
  onServerUnsubscribe(channel: string, reason: string): void;
  /** The server refused a channel (subscribe error, or a poll error naming it). */
  onChannelError(channel: string, error: HeraldError): void;
}

/** A transport: one connection attempt. After `closed` settles it is never reused. */
export interface Transport {
  readonly name: TransportName;
  /** Resolves when connected; rejects (with a HeraldError) when the transport cannot connect. */
  open(): Promise<void>;
  /** Resolves once the transport has stopped, for whatever reason (after `open` resolved, or when `close` is called). */
  readonly closed: Promise<TransportCloseInfo>;
  close(): void;
  /** Start receiving a channel (the host's `channels()` holds its cursor). */
  subscribe(channel: string, since: StreamPosition | undefined): void;
  /** Stop receiving a channel. */
  unsubscribe(channel: string): void;
  /** Run publish, history, presence or ping; resolves with the result or rejects with a HeraldError. */
  command(command: Command): Promise<unknown>;
}
