import { ClientErrorCodes, ErrorCodes, HeraldError, isTransient } from "./codes.js";
import { toPublication } from "./binary.js";
import type { Emitter } from "./emitter.js";
import type { Subscription } from "./subscription.js";
import type {
  ChannelEntry,
  ErrorEvent,
  HeraldEventMap,
  PublicationEvent,
  RecoveryEvent,
  SkippedEvent,
  SkippedRange,
  StreamPosition,
  Transport,
  TransportName,
  WirePublication,
} from "./types.js";

/** What the recovery bookkeeping needs from the rest of the client. */
export interface RecoveryHost {
  /** True while `transport` is the connection in use: what an older one reports is stale. */
  isActive(transport: Transport): boolean;
  /** The jittered delay before the `attempt`-th retry, shared with reconnects. */
  backoff(attempt: number): number;
  /** Makes the subscription object for a channel (the client owns its listeners' error reporting). */
  createSubscription(channel: string, serverSide: boolean): Subscription;
}

/** Reports an error on the client and, when given, on the subscription it concerns. */
export function reportError(
  emitter: Emitter<HeraldEventMap>,
  error: HeraldError,
  transport: TransportName | null,
  channel?: string,
  sub?: Subscription,
): void {
  const event: ErrorEvent = { error, transport };
  if (channel !== undefined) {
    event.channel = channel;
  }
  sub?.emit("error", event);
  emitter.emit("error", event);
}

/**
 * The recovery bookkeeping: every subscription and its cursor, the subscribes resent with `since` after a reconnect
 * or transport switch, and the delivery rule that keeps each channel gap-free and without repeats (a gap never
 * skips: it drops the connection so that the server recovers from the cursor, or says `recovered: false`).
 */
export class Recovery {
  private readonly subs = new Map<string, Subscription>();
  // Subscribes refused with "not now", waiting for their retry.
  private readonly retryTimers = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    private readonly host: RecoveryHost,
    private readonly emitter: Emitter<HeraldEventMap>,
  ) {}

  get(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  add(sub: Subscription): void {
    this.subs.set(sub.channel, sub);
  }

  delete(channel: string): void {
    this.subs.delete(channel);
  }

  /** The cursors to poll or resume from, copied so that a transport cannot move them. */
  cursors(): Map<string, StreamPosition | undefined> {
    const map = new Map<string, StreamPosition | undefined>();
    for (const sub of this.subs.values()) {
      map.set(sub.channel, sub.cursor === undefined ? undefined : { ...sub.cursor });
    }
    return map;
  }

  /** The connection is gone (or going): every subscription waits for the server to confirm it again. */
  markSubscribing(): void {
    for (const sub of this.subs.values()) {
      sub.setState("subscribing");
    }
  }

  /** A new connection: resends every subscription with `since` its cursor. */
  resubscribe(transport: Transport): void {
    for (const sub of this.subs.values()) {
      sub.setState("subscribing");
      transport.subscribe(sub.channel, sub.cursor === undefined ? undefined : { ...sub.cursor });
    }
  }

  /** The client stopped for good: pending `ready()` calls reject with its error. */
  stopped(error: HeraldError): void {
    for (const sub of this.subs.values()) {
      sub.clientStopped(error);
    }
  }

  /** Cancels pending subscribe retries: the transport they were for is gone (and a Node process may exit). */
  clearRetries(): void {
    for (const timer of this.retryTimers) {
      clearTimeout(timer);
    }
    this.retryTimers.clear();
  }

  applyEntry(transport: Transport, channel: string, entry: ChannelEntry, since: StreamPosition | undefined): void {
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
    if (entry.skipped !== undefined && !this.skip(transport, sub, entry.epoch, entry.skipped)) {
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
  applyServerSubscribe(transport: Transport, channel: string, entry: ChannelEntry): void {
    let sub = this.subs.get(channel);
    if (sub === undefined) {
      sub = this.host.createSubscription(channel, true);
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
  applyServerUnsubscribe(channel: string, reason: string): void {
    const sub = this.subs.get(channel);
    if (sub === undefined) {
      return;
    }
    this.subs.delete(channel);
    sub.setState("unsubscribed");
    sub.emit("unsubscribed", { channel, reason });
    this.emitter.emit("serverUnsubscribed", { channel, subscription: sub, reason });
  }

  applyPush(transport: Transport, channel: string, pub: WirePublication): void {
    const sub = this.subs.get(channel);
    if (sub === undefined || sub.cursor === undefined) {
      return;
    }
    this.deliver(transport, sub, sub.cursor.epoch, pub);
  }

  /** A conflated channel's skip notice, live (WebSocket, SSE). */
  applySkipped(transport: Transport, channel: string, skipped: SkippedRange): void {
    const sub = this.subs.get(channel);
    if (sub === undefined || sub.cursor === undefined) {
      return;
    }
    this.skip(transport, sub, sub.cursor.epoch, skipped);
  }

  /**
   * Moves the cursor past offsets the server left out on purpose (a conflated channel) and tells the application; they
   * are not a gap to recover. A notice that starts past the next offset is a gap like any other. False after a gap.
   */
  private skip(transport: Transport, sub: Subscription, epoch: string, skipped: SkippedRange): boolean {
    const cursor = sub.cursor!;
    if (skipped.to <= cursor.offset) {
      return true; // already past it (a seam)
    }
    if (skipped.from > cursor.offset + 1) {
      this.gap(transport, sub, skipped.from);
      return false;
    }
    sub.cursor = { epoch, offset: skipped.to };
    const event: SkippedEvent = { channel: sub.channel, epoch, from: cursor.offset + 1, to: skipped.to };
    sub.emit("skipped", event);
    this.emitter.emit("skipped", event);
    return this.host.isActive(transport) && this.subs.get(sub.channel) === sub;
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
    return this.host.isActive(transport) && this.subs.get(sub.channel) === sub;
  }

  private gap(transport: Transport, sub: Subscription, offset: number): void {
    // Never skip: reconnect, and the server recovers from the cursor (or says recovered: false).
    reportError(
      this.emitter,
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

  channelFailed(transport: Transport, channel: string, error: HeraldError): void {
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
      reportError(this.emitter, error, transport.name, channel, sub);
      const timer = setTimeout(() => {
        this.retryTimers.delete(timer);
        if (this.host.isActive(transport) && this.subs.get(channel) === sub && sub.state === "subscribing") {
          transport.subscribe(channel, sub.cursor === undefined ? undefined : { ...sub.cursor });
        }
      }, this.host.backoff(sub.retries++));
      this.retryTimers.add(timer);
      return;
    }
    this.subs.delete(channel);
    sub.setState("unsubscribed");
    reportError(this.emitter, error, transport.name, channel, sub);
  }
}
