import { toJsonCommand } from "./binary.js";
import { ClientErrorCodes, ErrorCodes, HeraldError } from "./codes.js";
import type { ChannelEntry, Command, PresenceInfo, StreamPosition, Transport, TransportCloseInfo, TransportHost } from "./types.js";
import { toEntry } from "./transport_websocket.js";

/** The largest batch a poll answer holds per channel by default (`Herald:MaxHistoryLimit`): more may be waiting. */
const FULL_BATCH = 1000;

export interface HttpAnswer {
  status: number;
  body: unknown;
  headers: Headers;
}

export function joinUrl(baseUrl: string, path: string): string {
  const url = new URL(baseUrl);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}${path}`;
  url.search = "";
  url.hash = "";
  return url.toString();
}

function sameCursor(a: StreamPosition | undefined, b: StreamPosition | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.offset === b.offset && a.epoch === b.epoch);
}

/** The HTTP error of an answer: `{"error":{"code","message"}}`, or a generic one from the status. */
export function httpError(answer: HttpAnswer, what: string): HeraldError {
  const error = (answer.body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof error?.code === "string" ? error.code : ClientErrorCodes.BadResponse;
  const message = typeof error?.message === "string" ? error.message : `${what} answered HTTP ${answer.status}`;
  return new HeraldError(code, message, { status: answer.status });
}

export async function postJson(
fetchFn: typeof fetch,
token: string | undefined,
url: string,
body: unknown,
timeoutMs: number,
signal: AbortSignal,
): Promise<HttpAnswer> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  signal.addEventListener("abort", onAbort);
  if (signal.aborted) {
    controller.abort();
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== undefined) {
    headers["authorization"] = `Bearer ${token}`;
  }
  try {
    const res = await fetchFn(url, { method: "POST", headers, body: JSON.stringify(body), signal: controller.signal });
    const text = await res.text();
    let parsed: unknown = null;
    if (text !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new HeraldError(ClientErrorCodes.BadResponse, `${url} answered HTTP ${res.status} with invalid JSON`, {
          status: res.status,
        });
      }
    }
    return { status: res.status, body: parsed, headers: res.headers };
  } catch (err) {
    if (err instanceof HeraldError) {
      throw err;
    }
    if (timedOut) {
      throw new HeraldError(ClientErrorCodes.Timeout, `${url} did not answer within ${timeoutMs} ms`);
    }
    throw new HeraldError(ClientErrorCodes.TransportFailed, `${url} failed: ${String(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

/** A command over `POST /cmd` (polling and SSE): its result, or the error the server answered with. */
export async function postCommand(
  fetchFn: typeof fetch,
  cmdUrl: string,
  host: TransportHost,
  command: Command & { id: number },
  signal: AbortSignal,
): Promise<unknown> {
  // Bytes to publish go as "b64" over JSON.
  const answer = await postJson(fetchFn, host.token, cmdUrl, { ...toJsonCommand(command), id: command.id }, host.timeout, signal);
  const body = answer.body as { result?: unknown; error?: { code?: unknown; message?: unknown } } | null;
  if (answer.status === 200 && body !== null && typeof body === "object" && body.error === undefined) {
    return body.result ?? {};
  }
  throw httpError(answer, `/cmd ${command.op}`);
}

/**
 * What both polling transports share: `POST /poll` with every subscribed channel and its cursor (and the client's id
 * and info, for presence), and the stateless commands over `POST /cmd`, both with `Authorization: Bearer <token>`.
 * The server keeps no delivery state between polls, so the cursors the client holds are the whole state; it only
 * remembers, for a while, that the client is present.
 */
export abstract class HttpPollingTransport implements Transport {
  abstract readonly name: "longpoll" | "poll";
  readonly closed: Promise<TransportCloseInfo>;

  protected readonly host: TransportHost;
  private readonly pollUrl: string;
  private readonly cmdUrl: string;
  private readonly fetchFn: typeof fetch;
  private resolveClosed!: (info: TransportCloseInfo) => void;
  private isClosed = false;
  private nextId = 1;
  private readonly closeController = new AbortController();
  private inflight: { channels: Set<string>; controller: AbortController } | null = null;
  private restartRequested = false;
  private wakeSleep: (() => void) | null = null;
  private woken = false;

  constructor(baseUrl: string, host: TransportHost, fetchFn: typeof fetch | undefined) {
    this.host = host;
    this.pollUrl = joinUrl(baseUrl, "/poll");
    this.cmdUrl = joinUrl(baseUrl, "/cmd");
    const f = fetchFn ?? globalThis.fetch;
    this.fetchFn = (input, init) => f(input, init);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Seconds the server may hold a poll (0: answer at once). */
  protected abstract readonly wait: number;

  /** Milliseconds to pause before the next poll. */
  protected abstract pauseAfter(news: boolean, fullBatch: boolean, elapsedMs: number): number;

  async open(): Promise<void> {
    // Polls need channels, so the connection check is a `ping` over /cmd: it proves the path and the token.
    try {
      await this.command({ op: "ping" });
    } catch (err) {
      throw this.finish(err as HeraldError);
    }
    if (this.isClosed) {
      throw new HeraldError(ClientErrorCodes.Disconnected, "closed while connecting");
    }
    void this.loop();
  }

  close(): void {
    this.finish(new HeraldError(ClientErrorCodes.Disconnected, "closed by the client"));
  }

  subscribe(channel: string): void {
    const inflight = this.inflight;
    if (inflight !== null && !inflight.channels.has(channel)) {
      // A held long poll does not know the new channel: ask again at once, with it.
      this.restartRequested = true;
      inflight.controller.abort();
    }
    this.wake();
  }

  unsubscribe(): void {
    // Nothing to tell the server: the next poll simply leaves the channel out.
  }

  async command(command: Command): Promise<unknown> {
    if (this.isClosed) {
      throw new HeraldError(ClientErrorCodes.Disconnected, "the transport is closed");
    }
    return postCommand(this.fetchFn, this.cmdUrl, this.host, { id: this.nextId++, ...command }, this.closeController.signal);
  }

  private async loop(): Promise<void> {
    while (!this.isClosed) {
      const cursors = this.host.channels();
      if (cursors.size === 0) {
        await this.sleep(Number.POSITIVE_INFINITY);
        continue;
      }
      const channels: Record<string, StreamPosition | Record<string, never>> = {};
      for (const [channel, cursor] of cursors) {
        channels[channel] = cursor === undefined ? {} : { offset: cursor.offset, epoch: cursor.epoch };
      }
      // The client id makes the server list this client in presence until shortly after the poll ends.
      const body: { channels: typeof channels; wait?: number; client: string; info?: PresenceInfo } = {
        channels,
        client: this.host.clientId,
      };
      if (this.wait > 0) {
        body.wait = this.wait;
      }
      if (this.host.info !== undefined) {
        body.info = this.host.info;
      }
      const controller = new AbortController();
      const onClose = () => controller.abort();
      this.closeController.signal.addEventListener("abort", onClose);
      this.inflight = { channels: new Set(cursors.keys()), controller };
      this.restartRequested = false;
      const started = Date.now();
      let answer: HttpAnswer;
      try {
        answer = await this.post(this.pollUrl, body, this.wait * 1000 + this.host.timeout, controller.signal);
      } catch (err) {
        if (this.isClosed) {
          return;
        }
        if (this.restartRequested) {
          continue;
        }
        this.finish(err as HeraldError);
        return;
      } finally {
        this.inflight = null;
        this.closeController.signal.removeEventListener("abort", onClose);
      }
      if (this.isClosed) {
        return;
      }
      if (answer.status === 200) {
        const result = (answer.body as { channels?: Record<string, unknown> } | null)?.channels;
        if (result === undefined || result === null || typeof result !== "object") {
          this.finish(new HeraldError(ClientErrorCodes.BadResponse, "a poll answer without channels"));
          return;
        }
        let news = false;
        let full = false;
        for (const [channel, value] of Object.entries(result)) {
          let entry: ChannelEntry;
          try {
            entry = toEntry(value);
          } catch (err) {
            this.finish(err as HeraldError);
            return;
          }
          const sent = cursors.get(channel);
          // Skip answers for channels dropped (or whose cursor moved) while this poll was out: the next poll asks again.
          const current = this.host.channels();
          if (!current.has(channel) || !sameCursor(current.get(channel), sent)) {
            continue;
          }
          news ||= entry.publications.length > 0 || entry.recovered !== true;
          full ||= entry.publications.length >= FULL_BATCH;
          this.host.onEntry(channel, entry, sent);
          if (this.isClosed) {
            return;
          }
        }
        await this.sleep(this.pauseAfter(news, full, Date.now() - started));
        continue;
      }
      if (answer.status === 304) {
        await this.sleep(this.pauseAfter(false, false, Date.now() - started));
        continue;
      }
      const error = httpError(answer, "/poll");
      if (answer.status === 429) {
        const retryAfter = Number(answer.headers.get("retry-after"));
        await this.sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 1000);
        continue;
      }
      if (
        answer.status === 400 ||
        (answer.status === 403 && error.code === ErrorCodes.PermissionDenied)
      ) {
        // A channel-level problem fails the whole poll; the message names the channel. Hand it to the client,
        // which drops or resets that subscription, then poll on without it.
        const quoted = /'([^']+)'/.exec(error.message)?.[1];
        const channel =
          [...cursors.keys()]
            .filter((c) => error.message.startsWith(`${c}:`) || error.message.includes(c))
            .sort((a, b) => b.length - a.length)[0] ??
          // "unknown namespace 'x'": the first channel in that namespace.
          [...cursors.keys()].find((c) => quoted !== undefined && c.startsWith(`${quoted}:`));
        if (channel !== undefined && error.code !== ErrorCodes.BadRequest) {
          this.host.onChannelError(channel, error);
          continue;
        }
      }
      this.finish(error);
      return;
    }
  }

  private post(url: string, body: unknown, timeoutMs: number, signal: AbortSignal): Promise<HttpAnswer> {
    return postJson(this.fetchFn, this.host.token, url, body, timeoutMs, signal);
  }

  /** Sleeps `ms` (Infinity: until woken); `subscribe` and `close` wake it early. */
  private sleep(ms: number): Promise<void> {
    if (this.isClosed) {
      return Promise.resolve();
    }
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(done, Math.max(0, ms)) : undefined;
      const self = this;
      function done(): void {
        if (timer !== undefined) {
          clearTimeout(timer);
        }
        self.wakeSleep = null;
        resolve();
      }
      this.wakeSleep = done;
    });
  }

  private wake(): void {
    const wake = this.wakeSleep;
    if (wake !== null) {
      wake();
    } else if (this.inflight === null) {
      // The loop is between a poll and its sleep: make the next sleep return at once.
      this.woken = true;
    }
  }

  private finish(error: HeraldError): HeraldError {
    if (this.isClosed) {
      return error;
    }
    this.isClosed = true;
    this.closeController.abort();
    this.wakeSleep?.();
    this.resolveClosed({ error });
    return error;
  }
}

/** Short polling: `POST /poll` without `wait`, every `pollInterval` ms (at once when a full batch says more waits). */
export class PollTransport extends HttpPollingTransport {
  readonly name = "poll" as const;
  protected readonly wait = 0;
  private readonly interval: number;

  constructor(baseUrl: string, host: TransportHost, fetchFn: typeof fetch | undefined, pollInterval: number) {
    super(baseUrl, host, fetchFn);
    this.interval = pollInterval;
  }

  protected pauseAfter(_news: boolean, fullBatch: boolean): number {
    return fullBatch ? 0 : this.interval;
  }
}
