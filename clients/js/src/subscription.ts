import { ClientErrorCodes, HeraldError } from "./codes.js";
import type { HeraldClient } from "./client.js";
import { Emitter, type Listener } from "./emitter.js";
import type { StreamPosition, SubscriptionEventMap } from "./types.js";

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
