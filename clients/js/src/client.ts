import { ClientErrorCodes, ErrorCodes, HeraldError } from "./codes.js";
import { toPublication } from "./binary.js";
import { Connection } from "./connection.js";
import { Emitter, type Listener } from "./emitter.js";
import { Recovery } from "./recovery.js";
import { Subscription } from "./subscription.js";
import type {
  Command,
  ConnectionState,
  ErrorEvent,
  HeraldClientOptions,
  HeraldEventMap,
  HistoryOptions,
  HistoryResult,
  PublishOptions,
  PresenceResult,
  PublishResult,
  SubscriptionEventMap,
  TransportName,
  WirePublication,
} from "./types.js";

const CHANNEL_PATTERN = /^[A-Za-z0-9_\-.:@=~]{1,255}$/;

/** Throws `invalid_channel` for names the server would refuse for their syntax (docs/protocol.md, Channel names). */
function validateChannel(channel: string): void {
  const colon = channel.indexOf(":");
  if (!CHANNEL_PATTERN.test(channel) || colon === 0 || colon === channel.length - 1) {
    throw new HeraldError(ErrorCodes.InvalidChannel, `invalid channel name '${channel}'`);
  }
}

/** 32 hex digits from the platform's CSPRNG (`getRandomValues` works in insecure browser contexts too, unlike `randomUUID`). */
function randomClientId(): string {
  const bytes = new Uint8Array(16);
  const crypto = (globalThis as { crypto?: { getRandomValues?(array: Uint8Array): Uint8Array } }).crypto;
  if (crypto?.getRandomValues !== undefined) {
    crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = Math.floor(Math.random() * 256);
    }
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The Herald client: connects over WebSocket, long polling or short polling (falling back in that order when a
 * transport cannot connect), reconnects with exponential backoff and jitter, and recovers every subscription with
 * `since` after each reconnect or transport switch, delivering each publication once, in offset order.
 */
export class HeraldClient {
  readonly url: string;
  /**
   * A random id, stable for this client's lifetime, sent with every poll: the server lists a polling client in
   * presence under it. On a WebSocket the server assigns the connection's id instead; this id goes with `connect`
   * as `client`, so a move from polling ends the poll entry rather than listing the client twice.
   */
  readonly clientId: string = randomClientId();
  private readonly emitter: Emitter<HeraldEventMap>;
  /** Every subscription and its cursor; resumed by each new connection. */
  private readonly recovery: Recovery;
  /** The connection state machine: transports, fallback, reconnects, switches. */
  private readonly connection: Connection;

  constructor(url: string, options: HeraldClientOptions = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`the url must be http(s)://host:port, not ${url}`);
    }
    this.url = url;
    this.emitter = new Emitter((err, event) => this.listenerFailed(err, String(event)));
    this.recovery = new Recovery(
      {
        isActive: (transport) => this.connection.isActive(transport),
        backoff: (attempt) => this.connection.backoff(attempt),
        createSubscription: (channel, serverSide) => this.createSubscription(channel, serverSide),
      },
      this.emitter,
    );
    this.connection = new Connection(url, { ...options }, this.clientId, this.recovery, this.emitter);
  }

  /** "disconnected", "connecting" or "connected". */
  get state(): ConnectionState {
    return this.connection.state;
  }

  /** The transport in use (or being tried); null when disconnected. */
  get transport(): TransportName | null {
    return this.connection.transportName;
  }

  on<K extends keyof HeraldEventMap>(event: K, listener: Listener<HeraldEventMap[K]>): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof HeraldEventMap>(event: K, listener: Listener<HeraldEventMap[K]>): void {
    this.emitter.off(event, listener);
  }

  once<K extends keyof HeraldEventMap>(event: K, listener: Listener<HeraldEventMap[K]>): () => void {
    const off = this.emitter.on(event, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  /**
   * Starts connecting (trying the transports in order) and resolves once connected. The client keeps reconnecting
   * until `disconnect()`; the promise rejects only if `disconnect()` comes first or on a refusal no retry can cure
   * (`isFatal`: `unauthorized`, `forbidden_origin`, `payload_too_large`).
   */
  connect(): Promise<void> {
    return this.connection.connect();
  }

  /** Closes the transport and stops reconnecting. Subscriptions and their cursors stay: `connect()` resumes them. */
  disconnect(): void {
    this.connection.disconnect();
  }

  /**
   * Forces one transport (or, with undefined, goes back to the `transports` order). If the client is connected or
   * connecting, it reconnects now; every subscription resumes from its cursor. A forced transport is retried with
   * backoff for as long as it fails, without falling back; to try a transport once and fall back if it fails, use
   * `switchTransport()`.
   */
  setTransport(transport: TransportName | undefined): void {
    this.connection.setTransport(transport);
  }

  /**
   * Drops the current connection and makes **one** attempt to connect over `transport`, recovering every subscription
   * from its cursor. Resolves once connected over it.
   *
   * Rejects (never hangs) with a `HeraldError`:
   * - `switch_failed` when that attempt fails (or is dropped during it): the client then falls back to its configured
   *   `transports`, in order, without the one that just failed, as after any failed attempt; or when a later
   *   `switchTransport()` supersedes this one; or when `setTransport()` forces another transport.
   * - `disconnected` when the client is not running (call `connect()` first) or `disconnect()` comes first; the fatal
   *   error (`isFatal`: `unauthorized`, `forbidden_origin`, `payload_too_large`) when the connection is refused so.
   *
   * Either way no publication is lost or repeated: subscriptions resume from their cursors on whatever transport
   * connects. Asking for the transport in use reconnects over it. A switch requested while the client is connecting
   * or waiting to reconnect cuts that short.
   */
  switchTransport(transport: TransportName): Promise<void> {
    return this.connection.switchTransport(transport);
  }

  /** Subscribes to a channel (or returns the existing subscription). `onPublication` is added as a listener. */
  subscribe(channel: string, onPublication?: Listener<SubscriptionEventMap["publication"]>): Subscription {
    validateChannel(channel);
    let sub = this.recovery.get(channel);
    if (sub === undefined) {
      sub = this.createSubscription(channel, false);
      this.recovery.add(sub);
      this.connection.connected?.subscribe(channel, undefined);
    }
    if (onPublication !== undefined) {
      sub.on("publication", onPublication);
    }
    return sub;
  }

  /** The subscription to a channel, if any. */
  getSubscription(channel: string): Subscription | undefined {
    return this.recovery.get(channel);
  }

  /** Stops receiving a channel. */
  unsubscribe(channelOrSubscription: string | Subscription): void {
    const channel = typeof channelOrSubscription === "string" ? channelOrSubscription : channelOrSubscription.channel;
    const sub = this.recovery.get(channel);
    if (sub === undefined || (typeof channelOrSubscription !== "string" && sub !== channelOrSubscription)) {
      return;
    }
    this.recovery.delete(channel);
    sub.setState("unsubscribed");
    this.connection.connected?.unsubscribe(channel);
  }

  /**
   * Publishes `data` to a channel; resolves with its position. `data` is any JSON value, or a `Uint8Array` to publish
   * bytes: subscribers get the same bytes (`bytes`, with `binary: true`); they travel as a MessagePack `bin` over
   * `herald.msgpack`, as base64 (`"b64"`) over `herald.json` and polling. Waits for the connection if it is being made. With an
   * `idempotencyKey`, a retry after a lost reply publishes nothing twice (see {@link PublishOptions}).
   */
  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    validateChannel(channel);
    const command: Command = { op: "publish", channel, data };
    if (options.idempotencyKey !== undefined) {
      command.idempotency_key = options.idempotencyKey;
    }
    const result = (await this.connection.command(command)) as PublishResult;
    return { epoch: result.epoch, offset: result.offset };
  }

  /**
   * Calls `method` on the server's application handler with `data` (any JSON; omitted when undefined) and resolves with
   * the answer's `data`. Over the WebSocket, or `POST /cmd` when polling. Rejects with a `HeraldError`: `not_available`
   * (no handler answers the method), `bad_request` (an invalid name), `internal` (the handler failed or timed out), or
   * the handler's own code.
   */
  async rpc(method: string, data?: unknown): Promise<unknown> {
    if (typeof method !== "string" || method.length === 0) {
      throw new TypeError("method must be a non-empty string");
    }
    const command: Command = { op: "rpc", method };
    if (data !== undefined) {
      command.data = data;
    }
    const result = (await this.connection.command(command)) as { data?: unknown };
    return result.data ?? null;
  }

  /**
   * Reads a page of a channel's history: after `since` oldest first, or the newest `limit`; with `reverse`, before
   * `since` (or from the newest) newest first. Walk it all by passing each page's `next` as `since` until it is absent.
   */
  async history(channel: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    validateChannel(channel);
    const command: Command = { op: "history", channel };
    if (options.since !== undefined) {
      command.since = { offset: options.since.offset, epoch: options.since.epoch };
    }
    if (options.limit !== undefined) {
      command.limit = options.limit;
    }
    if (options.reverse === true) {
      command.reverse = true;
    }
    const result = (await this.connection.command(command)) as HistoryResult;
    const wire = (result as { publications?: WirePublication[] }).publications ?? [];
    const page: HistoryResult = { epoch: result.epoch, offset: result.offset, publications: wire.map(toPublication) };
    if (result.next !== undefined) {
      page.next = { offset: result.next.offset, epoch: result.next.epoch };
    }
    return page;
  }

  /**
   * The clients present in a channel on the node that answers, keyed by client id: WebSocket subscribers, and polling
   * clients until their lease runs out (a poll's wait plus the server's `PollPresenceTimeout`, 15 s by default).
   */
  async presence(channel: string): Promise<PresenceResult> {
    validateChannel(channel);
    const result = (await this.connection.command({ op: "presence", channel })) as { presence?: PresenceResult };
    return result.presence ?? {};
  }

  private createSubscription(channel: string, serverSide: boolean): Subscription {
    return new Subscription(this, channel, (err) => this.listenerFailed(err, "subscription", channel), serverSide);
  }

  private listenerFailed(err: unknown, event: string, channel?: string): void {
    if (event === "error") {
      return; // never loop on a throwing error listener
    }
    const error = new HeraldError(ClientErrorCodes.ListenerError, `a '${event}' listener threw: ${String(err)}`, { cause: err });
    const e: ErrorEvent = { error, transport: this.connection.transportName };
    if (channel !== undefined) {
      e.channel = channel;
    }
    this.emitter.emit("error", e);
  }
}
