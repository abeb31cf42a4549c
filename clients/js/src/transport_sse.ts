import { ClientErrorCodes, CloseCodes, ErrorCodes, HeraldError } from "./codes.js";
import { httpError, joinUrl, postCommand } from "./transport_poll.js";
import type {
  Command,
  EventSourceConstructor,
  EventSourceLike,
  Publication,
  StreamPosition,
  Transport,
  TransportCloseInfo,
  TransportHost,
} from "./types.js";
import { isSkippedRange, toEntry } from "./transport_websocket.js";

/**
 * Server-Sent Events: one `GET /sse` through the platform's `EventSource` carries every subscription (each channel's
 * recovery first, then live pushes); commands go over `POST /cmd`. A stream's channels are fixed by its URL, so when
 * the set of subscriptions changes the stream is reopened from the cursors the client holds, which loses and repeats
 * nothing. `EventSource` cannot send headers, so the token travels as the `token` query parameter.
 *
 * The stream is closed and the transport ends on any error instead of letting `EventSource` reconnect by itself: the
 * client's own reconnection (backoff, fallback, cursors) then takes over.
 */
export class SseTransport implements Transport {
  readonly name = "sse" as const;
  readonly closed: Promise<TransportCloseInfo>;

  private readonly host: TransportHost;
  private readonly sseUrl: string;
  private readonly cmdUrl: string;
  private readonly fetchFn: typeof fetch;
  private readonly EventSourceImpl: EventSourceConstructor | undefined;
  private resolveClosed!: (info: TransportCloseInfo) => void;
  private isClosed = false;
  private nextId = 1;
  private readonly closeController = new AbortController();
  private source: EventSourceLike | null = null;
  private streamChannels = new Set<string>();
  private reopenQueued = false;

  constructor(baseUrl: string, host: TransportHost, fetchFn: typeof fetch | undefined, eventSource: EventSourceConstructor | undefined) {
    this.host = host;
    this.sseUrl = joinUrl(baseUrl, "/sse");
    this.cmdUrl = joinUrl(baseUrl, "/cmd");
    const f = fetchFn ?? globalThis.fetch;
    this.fetchFn = (input, init) => f(input, init);
    this.EventSourceImpl = eventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  async open(): Promise<void> {
    if (this.EventSourceImpl === undefined) {
      throw this.finish(
        new HeraldError(ClientErrorCodes.TransportFailed, "this platform has no EventSource (pass the `eventsource` package's as the EventSource option)"),
      );
    }
    // A `ping` over /cmd proves the path and the token; then the stream must open (and its first event arrive), so
    // that a network where streaming responses do not pass falls back to polling at once.
    try {
      await this.command({ op: "ping" });
      await this.reopen();
    } catch (err) {
      throw this.finish(err as HeraldError);
    }
    if (this.isClosed) {
      throw new HeraldError(ClientErrorCodes.Disconnected, "closed while connecting");
    }
  }

  close(): void {
    this.finish(new HeraldError(ClientErrorCodes.Disconnected, "closed by the client"));
  }

  subscribe(channel: string): void {
    if (!this.streamChannels.has(channel)) {
      this.queueReopen();
    }
  }

  unsubscribe(channel: string): void {
    if (this.streamChannels.has(channel)) {
      this.queueReopen();
    }
  }

  command(command: Command): Promise<unknown> {
    if (this.isClosed) {
      return Promise.reject(new HeraldError(ClientErrorCodes.Disconnected, "the transport is closed"));
    }
    return postCommand(this.fetchFn, this.cmdUrl, this.host, { id: this.nextId++, ...command }, this.closeController.signal);
  }

  // Several subscribes in one turn (a reconnect resubscribes everything) open one stream, not one each.
  private queueReopen(): void {
    if (this.reopenQueued || this.isClosed) {
      return;
    }
    this.reopenQueued = true;
    queueMicrotask(() => {
      this.reopenQueued = false;
      this.reopen().catch((err: HeraldError) => this.finish(err));
    });
  }

  /** Opens a stream with the current channels; resolves at its first event, rejects when it cannot open. */
  private reopen(): Promise<void> {
    this.source?.close();
    this.source = null;
    if (this.isClosed) {
      return Promise.resolve();
    }
    const cursors = this.host.channels();
    this.streamChannels = new Set(cursors.keys());
    if (cursors.size === 0) {
      return Promise.resolve();
    }
    const url = this.streamUrl(cursors);
    const source = new this.EventSourceImpl!(url);
    this.source = source;
    return new Promise((resolve, reject) => {
      let opened = false;
      source.onmessage = (event) => {
        if (this.source !== source) {
          return;
        }
        if (!opened) {
          opened = true;
          resolve();
        }
        this.receive(event.data, cursors);
      };
      source.onerror = () => {
        if (this.source !== source) {
          return;
        }
        source.close();
        this.source = null;
        if (opened) {
          this.finish(new HeraldError(ClientErrorCodes.TransportFailed, "the event stream ended"));
          return;
        }
        // EventSource says nothing about a refused request; ask the same URL once more to learn the status and code.
        void this.diagnose(url, cursors).then((error) => (error === null ? resolve() : reject(error)));
      };
    });
  }

  private streamUrl(cursors: Map<string, StreamPosition | undefined>): string {
    const query = new URLSearchParams();
    for (const channel of cursors.keys()) {
      query.append("channel", channel);
    }
    // offset and epoch once per channel, in the same order; empty for a channel without a cursor yet.
    if ([...cursors.values()].some((c) => c !== undefined)) {
      for (const cursor of cursors.values()) {
        query.append("offset", cursor === undefined ? "" : String(cursor.offset));
      }
      for (const cursor of cursors.values()) {
        query.append("epoch", cursor?.epoch ?? "");
      }
    }
    query.set("client", this.host.clientId);
    if (this.host.info !== undefined) {
      query.set("info", JSON.stringify(this.host.info));
    }
    if (this.host.token !== undefined) {
      query.set("token", this.host.token);
    }
    return `${this.sseUrl}?${query.toString()}`;
  }

  private receive(data: unknown, cursors: Map<string, StreamPosition | undefined>): void {
    let message: {
      push?: { channel?: unknown; pub?: unknown; skipped?: unknown };
      subscribed?: { channel?: unknown };
      close?: { code?: unknown; reason?: unknown };
    };
    try {
      message = JSON.parse(String(data)) as typeof message;
    } catch {
      this.finish(new HeraldError(ClientErrorCodes.BadResponse, "an event whose data is not JSON"));
      return;
    }
    if (message.push !== undefined && typeof message.push.channel === "string") {
      if (!this.host.channels().has(message.push.channel)) {
        // not (or no longer) received
      } else if (isSkippedRange(message.push.skipped)) {
        this.host.onSkipped(message.push.channel, message.push.skipped);
      } else {
        this.host.onPush(message.push.channel, message.push.pub as Publication);
      }
    } else if (message.subscribed !== undefined && typeof message.subscribed.channel === "string") {
      const channel = message.subscribed.channel;
      if (this.host.channels().has(channel)) {
        try {
          this.host.onEntry(channel, toEntry(message.subscribed), cursors.get(channel));
        } catch (err) {
          this.finish(err as HeraldError);
        }
      }
    } else if (message.close !== undefined) {
      const code = typeof message.close.code === "number" ? message.close.code : CloseCodes.Normal;
      const text = `the event stream closed (${code}${typeof message.close.reason === "string" && message.close.reason !== "" ? ` ${message.close.reason}` : ""})`;
      this.finish(
        code === CloseCodes.Unauthorized
          ? new HeraldError(ErrorCodes.Unauthorized, text, { closeCode: code })
          : new HeraldError(ClientErrorCodes.TransportFailed, text, { closeCode: code }),
      );
    }
  }

  /** The error behind a stream that did not open, or null when one channel was refused (it is dropped and the stream reopens). */
  private async diagnose(url: string, cursors: Map<string, StreamPosition | undefined>): Promise<HeraldError | null> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.host.timeout);
    try {
      const res = await this.fetchFn(url, { signal: controller.signal, headers: { accept: "text/event-stream" } });
      if (res.status === 200) {
        controller.abort(); // it opens now: the failure was passing, so the client reconnects
        return new HeraldError(ClientErrorCodes.TransportFailed, "the event stream failed to open");
      }
      let body: unknown = null;
      try {
        body = JSON.parse(await res.text());
      } catch {
        // not a Herald error body
      }
      const error = httpError({ status: res.status, body, headers: res.headers }, "/sse");
      const channel = [...cursors.keys()]
        .filter((c) => error.message.startsWith(`${c}:`) || error.message.includes(c))
        .sort((a, b) => b.length - a.length)[0];
      if (channel !== undefined && (error.code === ErrorCodes.PermissionDenied || error.code === ErrorCodes.InvalidChannel)) {
        this.host.onChannelError(channel, error);
        this.queueReopen();
        return null;
      }
      return error;
    } catch (err) {
      return new HeraldError(ClientErrorCodes.TransportFailed, `/sse failed: ${String(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  private finish(error: HeraldError): HeraldError {
    if (this.isClosed) {
      return error;
    }
    this.isClosed = true;
    this.source?.close();
    this.source = null;
    this.closeController.abort();
    this.resolveClosed({ error });
    return error;
  }
}
