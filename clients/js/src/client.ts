import { ClientErrorCodes, ErrorCodes, HeraldError, isFatal, isTransient } from "./codes.js";
import { LongPollTransport } from "./transport_longpoll.js";
import { PollTransport } from "./transport_poll.js";
import { SseTransport } from "./transport_sse.js";
import { WebSocketTransport } from "./transport_websocket.js";
import { toPublication } from "./binary.js";
import type {
  ChannelEntry,
  Command,
  ConnectionState,
  ErrorEvent,
  HeraldClientOptions,
  HeraldEventMap,
  HistoryOptions,
  HistoryResult,
  PublishOptions,
  PresenceResult,
  PublicationEvent,
  PublishResult,
  RecoveryEvent,
  StreamPosition,
  SubscriptionEventMap,
  Transport,
  TransportHost,
  TransportName,
  WirePublication,
} from "./types.js";

const DEFAULT_TRANSPORTS: readonly TransportName[] = ["websocket", "sse", "longpoll", "poll"];
const CHANNEL_PATTERN = /^[A-Za-z0-9_\-.:@=~]{1,255}$/;

type Listener<T> = (event: T) => void;

/** A small typed event emitter. A listener that throws does not stop the others. */
class Emitter<M extends object> {
  private readonly listeners = new Map<keyof M, Set<Listener<never>>>();

  constructor(private readonly onListenerError: (err: unknown, event: keyof M) => void) {}

  on<K extends keyof M>(event: K, listener: Listener<M[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof M>(event: K, listener: Listener<M[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  emit<K extends keyof M>(event: K, value: M[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) {
      return;
    }
    for (const listener of [...set]) {
      try {
        (listener as Listener<M[K]>)(value);
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
  }
}

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

/** The state of a {@link Subscription}. */
export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

/**
 * One channel the client receives. It keeps the channel's cursor (`position`: the epoch and the last offset
 * delivered), which every reconnect and transport switch sends as `since`, so publications are neither lost nor
 * repeated.
 */
export class Subscription {
  readonly channel: string;
  /** @internal */ cursor: StreamPosition | undefined;
  /** @internal subscribes refused with "not now" in a row, for the retry's backoff. */
  retries = 0;
  /** @internal a recovery that failed because the cursor was refused; reported with the next entry. */
  lostFrom: StreamPosition | undefined;
  private currentState: SubscriptionState = "subscribing";
  private readonly stopWaiters = new Set<(error: HeraldError) => void>();
  private readonly emitter: Emitter<SubscriptionEventMap>;
  private readonly client: HeraldClient;

  /**
   * True when the server made this subscription (the client's `serverSubscribed` event) rather than `subscribe()`. It
   * is resumed after reconnects all the same, with a `subscribe` the server allows under the normal rules.
   */
  readonly serverSide: boolean;

  /** @internal */
  constructor(client: HeraldClient, channel: string, onListenerError: (err: unknown) => void, serverSide = false) {
    this.client = client;
    this.channel = channel;
    this.serverSide = serverSide;
    this.emitter = new Emitter(onListenerError);
  }

  /** "subscribing" until the server confirms (again after each reconnect), then "subscribed"; "unsubscribed" at the end. */
  get state(): SubscriptionState {
    return this.currentState;
  }

  /** The cursor: the epoch and the offset of the last publication delivered (or the start position). */
  get position(): StreamPosition | undefined {
    return this.cursor === undefined ? undefined : { ...this.cursor };
  }

  on<K extends keyof SubscriptionEventMap>(event: K, listener: Listener<SubscriptionEventMap[K]>): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof SubscriptionEventMap>(event: K, listener: Listener<SubscriptionEventMap[K]>): void {
    this.emitter.off(event, listener);
  }

  /** Resolves with the position once the subscription is confirmed; rejects if it fails or after `timeoutMs`. */
  ready(timeoutMs = 30_000): Promise<StreamPosition> {
    if (this.currentState === "subscribed" && this.cursor !== undefined) {
      return Promise.resolve({ ...this.cursor });
    }
    if (this.currentState === "unsubscribed") {
      return Promise.reject(new HeraldError(ClientErrorCodes.Disconnected, `not subscribed to ${this.channel}`));
    }
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        offSubscribed();
        offError();
        this.stopWaiters.delete(onStop);
      };
      const timer = setTimeout(() => {
        done();
        reject(new HeraldError(ClientErrorCodes.Timeout, `${this.channel} was not subscribed within ${timeoutMs} ms`));
      }, timeoutMs);
      const offSubscribed = this.on("subscribed", (e) => {
        done();
        resolve({ ...e.position });
      });
      const offError = this.on("error", (e) => {
        if (this.currentState === "unsubscribed") {
          done();
          reject(e.error);
        }
      });
      const onStop = (error: HeraldError) => {
        done();
        reject(error);
      };
      this.stopWaiters.add(onStop);
    });
  }

  /**
   * @internal The client stopped for good (a fatal refusal): pending `ready()` calls reject with its error rather
   * than wait out their timeout. The subscription itself stays, to resume on the next `connect()`.
   */
  clientStopped(error: HeraldError): void {
    const waiters = [...this.stopWaiters];
    this.stopWaiters.clear();
    for (const stop of waiters) {
      stop(error);
    }
  }

  /** Stops receiving the channel. */
  unsubscribe(): void {
    this.client.unsubscribe(this);
  }

  /** @internal */
  setState(state: SubscriptionState): void {
    this.currentState = state;
  }

  /** @internal */
  emit<K extends keyof SubscriptionEventMap>(event: K, value: SubscriptionEventMap[K]): void {
    this.emitter.emit(event, value);
  }
}

interface Waiter {
  resolve(transport: Transport): void;
  reject(error: HeraldError): void;
}

/** One `switchTransport()` call: pending until the connection loop takes it, then settled by that one attempt. */
interface SwitchRequest {
  readonly name: TransportName;
  resolve(): void;
  reject(error: HeraldError): void;
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
  private readonly options: HeraldClientOptions;
  private forced: TransportName | undefined;
  private readonly emitter: Emitter<HeraldEventMap>;
  private readonly subs = new Map<string, Subscription>();
  private currentState: ConnectionState = "disconnected";
  private currentTransportName: TransportName | null = null;
  /** The transport being tried or in use; callbacks from any other are ignored. */
  private active: Transport | null = null;
  private generation = 0;
  private waiters: Waiter[] = [];
  private cancelSleep: (() => void) | null = null;
  // Subscribes refused with "not now", waiting for their retry.
  private readonly retryTimers = new Set<ReturnType<typeof setTimeout>>();
  /** A `switchTransport()` the loop has not taken yet. */
  private pendingSwitch: SwitchRequest | null = null;
  /** The switch whose attempt is under way. */
  private attemptingSwitch: SwitchRequest | null = null;
  /** An attempt that `switchTransport()` closed to make way: its failure is the switch's doing, not an error. */
  private interruptedAttempt: Transport | null = null;

  constructor(url: string, options: HeraldClientOptions = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`the url must be http(s)://host:port, not ${url}`);
    }
    this.url = url;
    this.options = { ...options };
    this.forced = options.transport;
    this.emitter = new Emitter((err, event) => this.listenerFailed(err, String(event)));
  }

  /** "disconnected", "connecting" or "connected". */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The transport in use (or being tried); null when disconnected. */
  get transport(): TransportName | null {
    return this.currentTransportName;
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
    const ready = this.waitConnected(Number.POSITIVE_INFINITY).then(() => undefined);
    ready.catch(() => {}); // an ignored connect() must not be an unhandled rejection
    if (this.currentState === "disconnected") {
      const generation = ++this.generation;
      void this.run(generation);
    }
    return ready;
  }

  /** Closes the transport and stops reconnecting. Subscriptions and their cursors stay: `connect()` resumes them. */
  disconnect(): void {
    this.halt(true);
  }

  /**
   * Stops the connection loop and closes the transport. `disconnect()` also fails pending `ready()` calls; a restart
   * (`setTransport()`) leaves them to the connection that follows.
   */
  private halt(stopsSubscriptions: boolean): void {
    this.generation++;
    this.cancelSleep?.();
    const transport = this.active;
    this.active = null;
    transport?.close();
    for (const sub of this.subs.values()) {
      sub.setState("subscribing");
    }
    this.setState("disconnected", null);
    const error = new HeraldError(ClientErrorCodes.Disconnected, "the client disconnected");
    this.rejectSwitches(error);
    this.rejectWaiters(error);
    this.clearRetries();
    if (stopsSubscriptions) {
      for (const sub of this.subs.values()) {
        sub.clientStopped(error);
      }
    }
  }

  /**
   * Forces one transport (or, with undefined, goes back to the `transports` order). If the client is connected or
   * connecting, it reconnects now; every subscription resumes from its cursor. A forced transport is retried with
   * backoff for as long as it fails, without falling back; to try a transport once and fall back if it fails, use
   * `switchTransport()`.
   */
  setTransport(transport: TransportName | undefined): void {
    this.forced = transport;
    if (this.currentState !== "disconnected") {
      this.halt(false);
      void this.connect();
    }
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
    if (transport !== "websocket" && transport !== "sse" && transport !== "longpoll" && transport !== "poll") {
      return Promise.reject(new TypeError(`unknown transport '${String(transport)}'`));
    }
    if (this.forced !== undefined && this.forced !== transport) {
      return Promise.reject(
        new HeraldError(ClientErrorCodes.SwitchFailed, `the client is forced to use ${this.forced} (setTransport(undefined) lifts it)`),
      );
    }
    if (this.currentState === "disconnected") {
      return Promise.reject(new HeraldError(ClientErrorCodes.Disconnected, "call connect() before switchTransport()"));
    }
    return new Promise<void>((resolve, reject) => {
      const superseded = this.pendingSwitch;
      this.pendingSwitch = { name: transport, resolve, reject };
      superseded?.reject(
        new HeraldError(ClientErrorCodes.SwitchFailed, `the switch to ${superseded.name} was superseded by a switch to ${transport}`),
      );
      // The loop takes the request at its next attempt: end what it is doing now (a connection, an attempt or a
      // backoff delay) so that the next attempt comes at once.
      const active = this.active;
      if (active !== null) {
        if (this.currentState === "connecting") {
          this.interruptedAttempt = active;
        }
        active.close();
      }
      this.cancelSleep?.();
    });
  }

  /** Subscribes to a channel (or returns the existing subscription). `onPublication` is added as a listener. */
  subscribe(channel: string, onPublication?: Listener<SubscriptionEventMap["publication"]>): Subscription {
    validateChannel(channel);
    let sub = this.subs.get(channel);
    if (sub === undefined) {
      sub = new Subscription(this, channel, (err) => this.listenerFailed(err, "subscription", channel));
      this.subs.set(channel, sub);
      if (this.currentState === "connected" && this.active !== null) {
        this.active.subscribe(channel, undefined);
      }
    }
    if (onPublication !== undefined) {
      sub.on("publication", onPublication);
    }
    return sub;
  }

  /** The subscription to a channel, if any. */
  getSubscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  /** Stops receiving a channel. */
  unsubscribe(channelOrSubscription: string | Subscription): void {
    const channel = typeof channelOrSubscription === "string" ? channelOrSubscription : channelOrSubscription.channel;
    const sub = this.subs.get(channel);
    if (sub === undefined || (typeof channelOrSubscription !== "string" && sub !== channelOrSubscription)) {
      return;
    }
    this.subs.delete(channel);
    sub.setState("unsubscribed");
    if (this.currentState === "connected" && this.active !== null) {
      this.active.unsubscribe(channel);
    }
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
    const result = (await this.command(command)) as PublishResult;
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
    const result = (await this.command(command)) as { data?: unknown };
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
    const result = (await this.command(command)) as HistoryResult;
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
    const result = (await this.command({ op: "presence", channel })) as { presence?: PresenceResult };
    return result.presence ?? {};
  }

  // -------------------------------------------------------------------------------------------------------------
  // connection management

  private get timeout(): number {
    return this.options.timeout ?? 10_000;
  }

  private transportOrder(): TransportName[] {
    if (this.forced !== undefined) {
      return [this.forced];
    }
    const order = this.options.transports ?? DEFAULT_TRANSPORTS;
    return order.length > 0 ? [...order] : [...DEFAULT_TRANSPORTS];
  }

  private backoff(attempt: number): number {
    const min = Math.max(0, this.options.minReconnectDelay ?? 500);
    const max = Math.max(min, this.options.maxReconnectDelay ?? 20_000);
    const delay = Math.min(max, min * 2 ** Math.min(attempt, 30));
    return delay / 2 + Math.random() * (delay / 2); // jitter: spread clients that lost the same server
  }

  /** The transports of a round: the configured order, from `from` (the transport that last worked) when given. */
  private roundOrder(from: TransportName | undefined): TransportName[] {
    const order = this.transportOrder();
    const i = from === undefined ? -1 : order.indexOf(from);
    return i < 0 ? order : order.slice(i);
  }

  /**
   * The connection loop of one `connect()`: ends when `generation` changes or on a fatal error. It tries the transports
   * in order, falls back on failure, stays on a transport while it works, and waits a growing, jittered delay after
   * every round; a pending `switchTransport()` takes the next attempt, without a delay.
   */
  private async run(generation: number): Promise<void> {
    let attempt = 0;
    let from: TransportName | undefined;
    while (generation === this.generation) {
      let queue = this.roundOrder(from);
      from = undefined;
      for (;;) {
        const request = this.pendingSwitch;
        this.pendingSwitch = null;
        let name: TransportName | undefined;
        if (request !== null) {
          name = request.name;
          // If the switch's one attempt fails, fall back the way a first connect does, without that transport.
          queue = this.transportOrder().filter((n) => n !== request.name);
        } else {
          name = queue.shift();
          if (name === undefined) {
            break;
          }
        }
        this.attemptingSwitch = request;
        this.setState("connecting", name);
        const transport = this.createTransport(name);
        this.active = transport;
        try {
          await transport.open();
        } catch (err) {
          const error = asHeraldError(err);
          const interrupted = this.interruptedAttempt === transport;
          this.settleAttempt(transport, request);
          if (generation !== this.generation) {
            return; // disconnect() settled the switch
          }
          if (!interrupted) {
            this.reportError(error, name);
          }
          if (isFatal(error)) {
            request?.reject(error);
            this.fail(error);
            return;
          }
          // Read again: switchTransport() may have queued a newer request during the attempt.
          const newer = this.pendingSwitch as SwitchRequest | null;
          request?.reject(
            new HeraldError(
              ClientErrorCodes.SwitchFailed,
              newer !== null
                ? `the switch to ${name} was superseded by a switch to ${newer.name}`
                : `could not switch to ${name} (${error.message}); falling back`,
              { cause: error },
            ),
          );
          continue; // fall back to the next transport
        }
        this.settleAttempt(transport, request);
        if (generation !== this.generation) {
          transport.close();
          return;
        }
        attempt = 0;
        this.setState("connected", name);
        for (const sub of this.subs.values()) {
          sub.setState("subscribing");
          transport.subscribe(sub.channel, sub.cursor === undefined ? undefined : { ...sub.cursor });
        }
        this.resolveWaiters(transport);
        request?.resolve();
        const { error } = await transport.closed;
        if (generation !== this.generation) {
          return;
        }
        this.active = null;
        for (const sub of this.subs.values()) {
          sub.setState("subscribing");
        }
        if (error.code !== ClientErrorCodes.Disconnected) {
          this.reportError(error, name);
        }
        if (isFatal(error)) {
          this.fail(error);
          return;
        }
        this.setState("connecting", name);
        from = name; // it worked: reconnect with the same transport first
        break;
      }
      if (generation !== this.generation) {
        return;
      }
      this.active = null;
      if (this.pendingSwitch === null) {
        await this.sleep(this.backoff(attempt++));
      }
    }
  }

  private createTransport(name: TransportName): Transport {
    const client = this;
    // Callbacks from a transport that is no longer the active one are ignored.
    const host: TransportHost = {
      token: this.options.token,
      clientId: this.clientId,
      info: this.options.info,
      timeout: this.timeout,
      channels() {
        const map = new Map<string, StreamPosition | undefined>();
        if (client.active === transport && client.currentState === "connected") {
          for (const sub of client.subs.values()) {
            map.set(sub.channel, sub.cursor === undefined ? undefined : { ...sub.cursor });
          }
        }
        return map;
      },
      onEntry(channel, entry, since) {
        if (client.active === transport) {
          client.applyEntry(transport, channel, entry, since);
        }
      },
      onPush(channel, pub) {
        if (client.active === transport) {
          client.applyPush(transport, channel, pub);
        }
      },
      onChannelError(channel, error) {
        if (client.active === transport) {
          client.channelFailed(transport, channel, error);
        }
      },
      onServerSubscribe(channel, entry) {
        if (client.active === transport) {
          client.applyServerSubscribe(transport, channel, entry);
        }
      },
      onServerUnsubscribe(channel, reason) {
        if (client.active === transport) {
          client.applyServerUnsubscribe(channel, reason);
        }
      },
    };
    const transport: Transport =
      name === "websocket"
        ? new WebSocketTransport(this.url, host, this.options.WebSocket, this.options.protocol ?? "json")
        : name === "sse"
          ? new SseTransport(this.url, host, this.options.fetch, this.options.EventSource)
          : name === "longpoll"
            ? new LongPollTransport(this.url, host, this.options.fetch, this.options.longPollWait ?? 25)
            : new PollTransport(this.url, host, this.options.fetch, this.options.pollInterval ?? 1000);
    return transport;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.cancelSleep === done) {
          self.cancelSleep = null;
        }
        resolve();
      }
      this.cancelSleep = done;
    });
  }

  private setState(state: ConnectionState, transport: TransportName | null): void {
    const previous = this.currentState;
    if (previous === state && this.currentTransportName === transport) {
      return;
    }
    this.currentState = state;
    this.currentTransportName = transport;
    this.emitter.emit("state", { state, transport, previous });
  }

  /** Cancels pending subscribe retries: the transport they were for is gone (and a Node process may exit). */
  private clearRetries(): void {
    for (const timer of this.retryTimers) {
      clearTimeout(timer);
    }
    this.retryTimers.clear();
  }

  private fail(error: HeraldError): void {
    this.generation++;
    this.active = null;
    this.setState("disconnected", null);
    this.rejectSwitches(error);
    this.rejectWaiters(error);
    this.clearRetries();
    for (const sub of this.subs.values()) {
      sub.clientStopped(error);
    }
  }

  /** Forgets the bookkeeping of an attempt that has ended (unless a newer loop has replaced it meanwhile). */
  private settleAttempt(transport: Transport, request: SwitchRequest | null): void {
    if (this.interruptedAttempt === transport) {
      this.interruptedAttempt = null;
    }
    if (this.attemptingSwitch === request) {
      this.attemptingSwitch = null;
    }
  }

  /** Settles the pending switch and the one under way, if any: the loop that would have taken them has stopped. */
  private rejectSwitches(error: HeraldError): void {
    const switches = [this.pendingSwitch, this.attemptingSwitch];
    this.pendingSwitch = null;
    this.attemptingSwitch = null;
    for (const request of switches) {
      request?.reject(error);
    }
  }

  private waitConnected(timeoutMs: number): Promise<Transport> {
    if (this.currentState === "connected" && this.active !== null) {
      return Promise.resolve(this.active);
    }
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waiter: Waiter = {
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new HeraldError(ClientErrorCodes.Timeout, `not connected within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.waiters.push(waiter);
    });
  }

  private resolveWaiters(transport: Transport): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      w.resolve(transport);
    }
  }

  private rejectWaiters(error: HeraldError): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      w.reject(error);
    }
  }

  private async command(command: Command): Promise<unknown> {
    if (this.currentState === "disconnected") {
      throw new HeraldError(ClientErrorCodes.Disconnected, `cannot ${command.op}: the client is disconnected (call connect())`);
    }
    const transport = await this.waitConnected(this.timeout);
    return transport.command(command);
  }

  // -------------------------------------------------------------------------------------------------------------
  // delivery: cursors, dedupe, recovery

  private applyEntry(transport: Transport, channel: string, entry: ChannelEntry, since: StreamPosition | undefined): void {
    const sub = this.subs.get(channel);
    if (sub === undefined) {
      return;
    }
    sub.retries = 0;
    const lostFrom = sub.lostFrom ?? (entry.recovered === false ? (since ?? sub.cursor) : undefined);
    if (entry.recovered === false || sub.cursor === undefined || sub.cursor.epoch !== entry.epoch) {
      // A fresh start (no cursor yet) or a failed recovery: continue from the head the server gives.
      sub.lostFrom = undefined;
      sub.cursor = { epoch: entry.epoch, offset: entry.offset };
      if (lostFrom !== undefined || (since !== undefined && since.epoch !== entry.epoch)) {
        const event: RecoveryEvent = {
          channel,
          recovered: false,
          epoch: entry.epoch,
          offset: entry.offset,
          since: lostFrom ?? since!,
        };
        sub.emit("recovery", event);
        this.emitter.emit("recovery", event);
      }
      this.markSubscribed(sub);
      return;
    }
    const publications = [...entry.publications].sort((a, b) => a.offset - b.offset);
    for (const pub of publications) {
      if (!this.deliver(transport, sub, entry.epoch, pub)) {
        return;
      }
    }
    if (entry.offset > sub.cursor.offset) {
      if (entry.recovered === true) {
        this.gap(transport, sub, entry.offset);
        return;
      }
      sub.cursor = { epoch: entry.epoch, offset: entry.offset };
    }
    this.markSubscribed(sub);
  }

  /**
   * A subscribe push: makes (or reuses) the channel's subscription, announces a new one, then applies the push like a
   * subscribe reply. A new subscription has no cursor: it starts just before the first recovered publication, so they
   * are delivered, or at the head.
   */
  private applyServerSubscribe(transport: Transport, channel: string, entry: ChannelEntry): void {
    let sub = this.subs.get(channel);
    if (sub === undefined) {
      sub = new Subscription(this, channel, (err) => this.listenerFailed(err, "subscription", channel), true);
      this.subs.set(channel, sub);
      this.emitter.emit("serverSubscribed", { channel, subscription: sub });
      if (entry.recovered === true) {
        const first = Math.min(...entry.publications.map((p) => p.offset), entry.offset + 1);
        sub.cursor = { epoch: entry.epoch, offset: first - 1 };
      } else {
        // No cursor given, or the application's is gone: start at the head (the application asked; nothing to report).
        entry = { epoch: entry.epoch, offset: entry.offset, publications: [] };
      }
    }
    this.applyEntry(transport, channel, entry, undefined);
  }

  /** An unsubscribe push: the server ended this connection's subscription to the channel. */
  private applyServerUnsubscribe(channel: string, reason: string): void {
    const sub = this.subs.get(channel);
    if (sub === undefined) {
      return;
    }
    this.subs.delete(channel);
    sub.setState("unsubscribed");
    sub.emit("unsubscribed", { channel, reason });
    this.emitter.emit("serverUnsubscribed", { channel, subscription: sub, reason });
  }

  private applyPush(transport: Transport, channel: string, pub: WirePublication): void {
    const sub = this.subs.get(channel);
    if (sub === undefined || sub.cursor === undefined) {
      return;
    }
    this.deliver(transport, sub, sub.cursor.epoch, pub);
  }

  /** Delivers one publication if it is the next one; drops repeats; a gap resyncs. False after a gap. */
  private deliver(transport: Transport, sub: Subscription, epoch: string, pub: WirePublication): boolean {
    const cursor = sub.cursor!;
    if (pub.offset <= cursor.offset) {
      return true; // already delivered (a seam between transports or reconnects)
    }
    if (pub.offset !== cursor.offset + 1) {
      this.gap(transport, sub, pub.offset);
      return false;
    }
    sub.cursor = { epoch, offset: pub.offset };
    const event: PublicationEvent = Object.assign(toPublication(pub), { channel: sub.channel, epoch });
    sub.emit("publication", event);
    this.emitter.emit("publication", event);
    return this.active === transport && this.subs.get(sub.channel) === sub;
  }

  private gap(transport: Transport, sub: Subscription, offset: number): void {
    // Never skip: reconnect, and the server recovers from the cursor (or says recovered: false).
    this.reportError(
      new HeraldError(ClientErrorCodes.Gap, `${sub.channel}: got offset ${offset} after ${sub.cursor?.offset}; resynchronising`),
      transport.name,
      sub.channel,
    );
    transport.close();
  }

  private markSubscribed(sub: Subscription): void {
    if (sub.state !== "subscribed" && sub.cursor !== undefined) {
      sub.setState("subscribed");
      sub.emit("subscribed", { channel: sub.channel, position: { ...sub.cursor } });
    }
  }

  private channelFailed(transport: Transport, channel: string, error: HeraldError): void {
    const sub = this.subs.get(channel);
    if (sub === undefined || error.code === ErrorCodes.AlreadySubscribed) {
      return;
    }
    if (error.code === ErrorCodes.InvalidPosition) {
      // The cursor is beyond the head: start again from the head and report the recovery as failed.
      sub.lostFrom = sub.cursor;
      sub.cursor = undefined;
      transport.subscribe(channel, undefined);
      return;
    }
    if (isTransient(error)) {
      // "Not now" (say, many subscriptions resent at once after a reconnect, past the server's command rate): the
      // subscription stays and asks again after a backoff, from wherever its cursor stands then.
      this.reportError(error, transport.name, channel, sub);
      const timer = setTimeout(() => {
        this.retryTimers.delete(timer);
        if (this.active === transport && this.subs.get(channel) === sub && sub.state === "subscribing") {
          transport.subscribe(channel, sub.cursor === undefined ? undefined : { ...sub.cursor });
        }
      }, this.backoff(sub.retries++));
      this.retryTimers.add(timer);
      return;
    }
    this.subs.delete(channel);
    sub.setState("unsubscribed");
    this.reportError(error, transport.name, channel, sub);
  }

  private reportError(error: HeraldError, transport: TransportName | null, channel?: string, sub?: Subscription): void {
    const event: ErrorEvent = { error, transport };
    if (channel !== undefined) {
      event.channel = channel;
    }
    sub?.emit("error", event);
    this.emitter.emit("error", event);
  }

  private listenerFailed(err: unknown, event: string, channel?: string): void {
    if (event === "error") {
      return; // never loop on a throwing error listener
    }
    const error = new HeraldError(ClientErrorCodes.ListenerError, `a '${event}' listener threw: ${String(err)}`, { cause: err });
    const e: ErrorEvent = { error, transport: this.currentTransportName };
    if (channel !== undefined) {
      e.channel = channel;
    }
    this.emitter.emit("error", e);
  }
}

function asHeraldError(err: unknown): HeraldError {
  return err instanceof HeraldError
    ? err
    : new HeraldError(ClientErrorCodes.TransportFailed, String(err), { cause: err });
}
