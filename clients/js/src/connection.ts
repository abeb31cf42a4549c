import { ClientErrorCodes, HeraldError, isFatal } from "./codes.js";
import type { Emitter } from "./emitter.js";
import { reportError, type Recovery } from "./recovery.js";
import { LongPollTransport } from "./transport_longpoll.js";
import { PollTransport } from "./transport_poll.js";
import { SseTransport } from "./transport_sse.js";
import { WebSocketTransport } from "./transport_websocket.js";
import type { HeraldClient } from "./client.js";
import type {
  Command,
  StreamPosition,
  ConnectionState,
  HeraldClientOptions,
  HeraldEventMap,
  Transport,
  TransportHost,
  TransportName,
} from "./types.js";

const DEFAULT_TRANSPORTS: readonly TransportName[] = ["websocket", "sse", "longpoll", "poll"];

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
 * The connection state machine behind {@link HeraldClient}: one connection loop per `connect()`, trying the
 * transports in order (falling back when one cannot connect), reconnecting with exponential backoff and jitter,
 * and taking `switchTransport()` requests at its next attempt. Each new connection hands every subscription to
 * {@link Recovery} to resume from its cursor.
 */
export class Connection {
  private forced: TransportName | undefined;
  private currentState: ConnectionState = "disconnected";
  private currentTransportName: TransportName | null = null;
  /** The transport being tried or in use; callbacks from any other are ignored. */
  private active: Transport | null = null;
  private generation = 0;
  private waiters: Waiter[] = [];
  private cancelSleep: (() => void) | null = null;
  /** A `switchTransport()` the loop has not taken yet. */
  private pendingSwitch: SwitchRequest | null = null;
  /** The switch whose attempt is under way. */
  private attemptingSwitch: SwitchRequest | null = null;
  /** An attempt that `switchTransport()` closed to make way: its failure is the switch's doing, not an error. */
  private interruptedAttempt: Transport | null = null;

  constructor(
    private readonly url: string,
    private readonly options: HeraldClientOptions,
    private readonly clientId: string,
    private readonly recovery: Recovery,
    private readonly emitter: Emitter<HeraldEventMap>,
  ) {
    this.forced = options.transport;
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  get transportName(): TransportName | null {
    return this.currentTransportName;
  }

  /** The transport of the current connection, or null unless connected. */
  get connected(): Transport | null {
    return this.currentState === "connected" ? this.active : null;
  }

  /** True while `transport` is the one being tried or in use. */
  isActive(transport: Transport): boolean {
    return this.active === transport;
  }

  /** Starts the connection loop unless it runs; resolves once connected (see {@link HeraldClient.connect}). */
  connect(): Promise<void> {
    const ready = this.waitConnected(Number.POSITIVE_INFINITY).then(() => undefined);
    ready.catch(() => {}); // an ignored connect() must not be an unhandled rejection
    if (this.currentState === "disconnected") {
      const generation = ++this.generation;
      void this.run(generation);
    }
    return ready;
  }

  /** Stops the loop for good (see {@link HeraldClient.disconnect}). */
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
    this.recovery.markSubscribing();
    this.setState("disconnected", null);
    const error = new HeraldError(ClientErrorCodes.Disconnected, "the client disconnected");
    this.rejectSwitches(error);
    this.rejectWaiters(error);
    this.recovery.clearRetries();
    if (stopsSubscriptions) {
      this.recovery.stopped(error);
    }
  }

  /** Forces one transport, restarting the loop if it runs (see {@link HeraldClient.setTransport}). */
  setTransport(transport: TransportName | undefined): void {
    this.forced = transport;
    if (this.currentState !== "disconnected") {
      this.halt(false);
      void this.connect();
    }
  }

  /** Queues one attempt over `transport` for the loop (see {@link HeraldClient.switchTransport}). */
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

  backoff(attempt: number): number {
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
            reportError(this.emitter, error, name);
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
        this.recovery.resubscribe(transport);
        this.resolveWaiters(transport);
        request?.resolve();
        const { error } = await transport.closed;
        if (generation !== this.generation) {
          return;
        }
        this.active = null;
        this.recovery.markSubscribing();
        if (error.code !== ClientErrorCodes.Disconnected) {
          reportError(this.emitter, error, name);
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
    const connection = this;
    const recovery = this.recovery;
    // Callbacks from a transport that is no longer the active one are ignored.
    const host: TransportHost = {
      token: this.options.token,
      clientId: this.clientId,
      info: this.options.info,
      timeout: this.timeout,
      channels() {
        return connection.active === transport && connection.currentState === "connected"
          ? recovery.cursors()
          : new Map<string, StreamPosition | undefined>();
      },
      onEntry(channel, entry, since) {
        if (connection.active === transport) {
          recovery.applyEntry(transport, channel, entry, since);
        }
      },
      onPush(channel, pub) {
        if (connection.active === transport) {
          recovery.applyPush(transport, channel, pub);
        }
      },
      onSkipped(channel, skipped) {
        if (connection.active === transport) {
          recovery.applySkipped(transport, channel, skipped);
        }
      },
      onChannelError(channel, error) {
        if (connection.active === transport) {
          recovery.channelFailed(transport, channel, error);
        }
      },
      onServerSubscribe(channel, entry) {
        if (connection.active === transport) {
          recovery.applyServerSubscribe(transport, channel, entry);
        }
      },
      onServerUnsubscribe(channel, reason) {
        if (connection.active === transport) {
          recovery.applyServerUnsubscribe(channel, reason);
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

  private fail(error: HeraldError): void {
    this.generation++;
    this.active = null;
    this.setState("disconnected", null);
    this.rejectSwitches(error);
    this.rejectWaiters(error);
    this.recovery.clearRetries();
    this.recovery.stopped(error);
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

  async command(command: Command): Promise<unknown> {
    if (this.currentState === "disconnected") {
      throw new HeraldError(ClientErrorCodes.Disconnected, `cannot ${command.op}: the client is disconnected (call connect())`);
    }
    const transport = await this.waitConnected(this.timeout);
    return transport.command(command);
  }

}

function asHeraldError(err: unknown): HeraldError {
  return err instanceof HeraldError
    ? err
    : new HeraldError(ClientErrorCodes.TransportFailed, String(err), { cause: err });
}
