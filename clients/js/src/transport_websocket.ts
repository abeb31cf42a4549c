import { toJsonCommand } from "./binary.js";
import { ClientErrorCodes, CloseCodes, ErrorCodes, HeraldError } from "./codes.js";
import type {
  ChannelEntry,
  Command,
  Protocol,
  SkippedRange,
  WirePublication,
  StreamPosition,
  Transport,
  TransportCloseInfo,
  TransportHost,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";

/** The WebSocket subprotocol Herald speaks. */
export const SUBPROTOCOL = "herald.json";

/** The MessagePack subprotocol. */
export const MSGPACK_SUBPROTOCOL = "herald.msgpack";

type MsgPackCodec = typeof import("@msgpack/msgpack");
let msgpackModule: Promise<MsgPackCodec> | undefined;

/**
 * `@msgpack/msgpack`, loaded on first use: `herald.json` clients (and pages that map no URL to it) never fetch it. In a
 * browser without a bundler, map it with an import map (see the README).
 */
function loadMsgPack(): Promise<MsgPackCodec> {
  msgpackModule ??= import("@msgpack/msgpack");
  return msgpackModule;
}

interface Pending {
  resolve(result: unknown): void;
  reject(error: HeraldError): void;
  timer: ReturnType<typeof setTimeout>;
}

interface ServerMessage {
  id?: number;
  result?: unknown;
  error?: { code?: string; message?: string };
  push?: { channel?: string; pub?: WirePublication; subscribe?: unknown; unsubscribe?: { reason?: string }; skipped?: unknown };
}

/** `http(s)://host[:port][/base]` → `ws(s)://host[:port][/base]/ws`. */
export function webSocketUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/ws`;
  url.search = "";
  url.hash = "";
  return url.toString();
}

/**
 * The WebSocket transport: `GET /ws`, subprotocol `herald.json`, newline-delimited JSON both ways. `open` sends
 * `connect` and resolves with its reply; subscriptions are sent with `since` so the server recovers what was missed.
 */
export class WebSocketTransport implements Transport {
  readonly name = "websocket" as const;
  readonly closed: Promise<TransportCloseInfo>;

  private readonly url: string;
  private readonly host: TransportHost;
  private readonly ctor: WebSocketConstructor | undefined;
  private ws: WebSocketLike | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private resolveClosed!: (info: TransportCloseInfo) => void;
  private isClosed = false;
  private keepAlive: ReturnType<typeof setInterval> | undefined;
  private openFailed: ((error: HeraldError) => void) | null = null;
  private readonly decoder = new TextDecoder();

  private readonly msgpack: boolean;
  private codec: MsgPackCodec | undefined;

  constructor(baseUrl: string, host: TransportHost, ctor: WebSocketConstructor | undefined, protocol: Protocol = "json") {
    this.msgpack = protocol === "msgpack";
    this.url = webSocketUrl(baseUrl);
    this.host = host;
    this.ctor = ctor;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  async open(): Promise<void> {
    if (this.msgpack) {
      try {
        this.codec = await loadMsgPack();
      } catch (err) {
        msgpackModule = undefined;
        throw new HeraldError(ClientErrorCodes.TransportFailed, `protocol "msgpack" needs the package @msgpack/msgpack (npm install @msgpack/msgpack), which did not load: ${String(err)}`, { cause: err });
      }
    }
    return this.openSocket();
  }

  private openSocket(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const Ctor = this.ctor ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
      if (Ctor === undefined) {
        reject(this.finish(new HeraldError(ClientErrorCodes.TransportFailed, "no WebSocket constructor (pass options.WebSocket)")));
        return;
      }
      if (this.isClosed) {
        reject(new HeraldError(ClientErrorCodes.Disconnected, "the transport is closed"));
        return;
      }
      const timer = setTimeout(() => {
        this.finish(new HeraldError(ClientErrorCodes.Timeout, `WebSocket did not connect within ${this.host.timeout} ms`));
      }, this.host.timeout);
      // Until connected, whatever ends the transport (an error, a close, close(), the timeout) rejects open().
      this.openFailed = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      const fail = (error: HeraldError) => this.finish(error);
      let ws: WebSocketLike;
      try {
        ws = new Ctor(this.url, this.msgpack ? MSGPACK_SUBPROTOCOL : SUBPROTOCOL);
        // MessagePack frames are read as bytes (browsers default to Blob).
        ws.binaryType = "arraybuffer";
      } catch (err) {
        fail(new HeraldError(ClientErrorCodes.TransportFailed, `WebSocket failed: ${String(err)}`, { cause: err }));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        if (this.isClosed) {
          return;
        }
        // `client`: the id this client polls with, so a move from polling ends its poll presence (not listed twice).
        const connect: Command = { op: "connect", client: this.host.clientId };
        if (this.host.token !== undefined) {
          connect.token = this.host.token;
        }
        if (this.host.info !== undefined) {
          connect.info = this.host.info;
        }
        this.request(connect).then(
          (result) => {
            if (this.isClosed) {
              return;
            }
            clearTimeout(timer);
            this.openFailed = null;
            this.startKeepAlive(result);
            resolve();
          },
          (err: HeraldError) => fail(err),
        );
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onerror = () => {
        // A close event follows; browsers give no detail here. Fail now in case it does not.
        fail(new HeraldError(ClientErrorCodes.TransportFailed, "WebSocket error"));
      };
      ws.onclose = (event) => {
        const code = event.code;
        const message = `WebSocket closed (${code}${event.reason ? ` ${event.reason}` : ""})`;
        const error =
          code === CloseCodes.Unauthorized
            ? new HeraldError(ErrorCodes.Unauthorized, message, { closeCode: code })
            : new HeraldError(ClientErrorCodes.TransportFailed, message, { closeCode: code });
        fail(error);
      };
    });
  }

  close(): void {
    this.finish(new HeraldError(ClientErrorCodes.Disconnected, "closed by the client", { closeCode: CloseCodes.Normal }));
  }

  subscribe(channel: string, since: StreamPosition | undefined): void {
    const command: Command = { op: "subscribe", channel };
    if (since !== undefined) {
      command.since = { offset: since.offset, epoch: since.epoch };
    }
    // The reply is handled as it is read, not in a promise's continuation: the pushes that follow it in the same frame
    // are handled in the same loop, and would otherwise arrive before the channel has its position (and be dropped).
    this.send(command, {
      resolve: (result) => {
        let entry: ChannelEntry;
        try {
          entry = toEntry(result);
        } catch (err) {
          this.finish(err as HeraldError);
          return;
        }
        this.host.onEntry(channel, entry, since);
      },
      reject: (err: HeraldError) => {
        if (err.code === ClientErrorCodes.Timeout) {
          this.finish(new HeraldError(ClientErrorCodes.TransportFailed, `no reply to subscribe ${channel}`));
        } else if (err.code !== ClientErrorCodes.Disconnected && err.code !== ClientErrorCodes.TransportFailed) {
          this.host.onChannelError(channel, err);
        }
      },
    });
  }

  unsubscribe(channel: string): void {
    this.request({ op: "unsubscribe", channel }).catch(() => {
      // not_subscribed or a closed transport: either way the channel is gone.
    });
  }

  command(command: Command): Promise<unknown> {
    return this.request(command);
  }

  private request(command: Command): Promise<unknown> {
    return new Promise((resolve, reject) => this.send(command, { resolve, reject }));
  }

  /** Sends a command; `waiter` is called with its reply (synchronously, as the reply is read) or its failure. */
  private send(command: Command, waiter: Omit<Pending, "timer">): void {
    const ws = this.ws;
    if (this.isClosed || ws === null) {
      waiter.reject(new HeraldError(ClientErrorCodes.Disconnected, "the WebSocket is closed"));
      return;
    }
    const id = this.nextId++;
    const timer = setTimeout(() => {
      this.pending.delete(id);
      waiter.reject(new HeraldError(ClientErrorCodes.Timeout, `no reply to '${command.op}' within ${this.host.timeout} ms`));
    }, this.host.timeout);
    this.pending.set(id, { ...waiter, timer });
    try {
      ws.send(this.codec !== undefined ? this.codec.encode({ id, ...command }) : JSON.stringify({ id, ...toJsonCommand(command) }));
    } catch (err) {
      clearTimeout(timer);
      this.pending.delete(id);
      waiter.reject(new HeraldError(ClientErrorCodes.TransportFailed, `send failed: ${String(err)}`, { cause: err }));
    }
  }

  private receive(data: unknown): void {
    if (this.isClosed) {
      return;
    }
    if (this.msgpack) {
      this.receiveMsgPack(data);
      return;
    }
    let text: string;
    if (typeof data === "string") {
      text = data;
    } else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      text = this.decoder.decode(data as ArrayBuffer);
    } else {
      return;
    }
    // A frame may hold several messages, one per line.
    for (const line of text.split("\n")) {
      if (line.trim() === "") {
        continue;
      }
      let message: ServerMessage;
      try {
        message = JSON.parse(line) as ServerMessage;
      } catch {
        this.finish(new HeraldError(ClientErrorCodes.BadResponse, "the server sent invalid JSON"));
        return;
      }
      if (!this.handle(message)) {
        return;
      }
    }
  }

  /** A `herald.msgpack` frame: MessagePack maps back to back, the same messages as `herald.json`'s lines. */
  private receiveMsgPack(data: unknown): void {
    if (!(data instanceof ArrayBuffer || ArrayBuffer.isView(data))) {
      this.finish(new HeraldError(ClientErrorCodes.BadResponse, "the server sent text on herald.msgpack"));
      return;
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let messages: ServerMessage[];
    try {
      messages = [...this.codec!.decodeMulti(bytes)] as ServerMessage[];
    } catch {
      this.finish(new HeraldError(ClientErrorCodes.BadResponse, "the server sent invalid MessagePack"));
      return;
    }
    for (const message of messages) {
      if (!this.handle(message)) {
        return;
      }
    }
  }

  /** Handles one message; false once the transport is closed. */
  private handle(message: ServerMessage): boolean {
    if (message === null || typeof message !== "object") {
      return !this.isClosed;
    }
    if (message.push !== undefined) {
      const { channel, pub, subscribe, unsubscribe, skipped } = message.push;
      if (typeof channel !== "string") {
        return !this.isClosed;
      }
      if (pub !== undefined && typeof pub.offset === "number") {
        this.host.onPush(channel, pub);
      } else if (subscribe !== undefined) {
        let entry: ChannelEntry;
        try {
          entry = toEntry(subscribe);
        } catch (err) {
          this.finish(err as HeraldError);
          return false;
        }
        this.host.onServerSubscribe(channel, entry);
      } else if (isSkippedRange(skipped)) {
        this.host.onSkipped(channel, skipped);
      } else if (unsubscribe !== undefined) {
        this.host.onServerUnsubscribe(channel, unsubscribe.reason ?? "");
      }
      return !this.isClosed;
    }
    if (typeof message.id === "number") {
      const waiter = this.pending.get(message.id);
      if (waiter === undefined) {
        return !this.isClosed;
      }
      this.pending.delete(message.id);
      clearTimeout(waiter.timer);
      if (message.error !== undefined) {
        waiter.reject(new HeraldError(message.error.code ?? ErrorCodes.Internal, message.error.message ?? "error"));
      } else {
        waiter.resolve(message.result ?? {});
      }
    }
    return !this.isClosed;
  }

  private startKeepAlive(connectResult: unknown): void {
    const seconds = (connectResult as { ping?: unknown }).ping;
    if (typeof seconds !== "number" || seconds <= 0) {
      return;
    }
    // The server pings at the WebSocket level; this application ping also finds a dead path from our side.
    this.keepAlive = setInterval(() => {
      this.request({ op: "ping" }).catch((err: HeraldError) => {
        if (err.code === ClientErrorCodes.Timeout) {
          this.finish(new HeraldError(ClientErrorCodes.TransportFailed, "no answer to ping"));
        }
      });
    }, seconds * 1000);
  }

  /** Stops the transport once: rejects pending requests, closes the socket, settles `closed`. Returns the error. */
  private finish(error: HeraldError): HeraldError {
    if (this.isClosed) {
      return error;
    }
    this.isClosed = true;
    this.openFailed?.(error);
    this.openFailed = null;
    if (this.keepAlive !== undefined) {
      clearInterval(this.keepAlive);
    }
    for (const [id, waiter] of this.pending) {
      this.pending.delete(id);
      clearTimeout(waiter.timer);
      waiter.reject(new HeraldError(ClientErrorCodes.Disconnected, `the WebSocket closed: ${error.message}`));
    }
    const ws = this.ws;
    if (ws !== null) {
      // No-ops rather than null: some implementations (the `ws` package) throw on an 'error' nobody listens to.
      const ignore = () => {};
      ws.onopen = ignore;
      ws.onmessage = ignore;
      ws.onerror = ignore;
      ws.onclose = ignore;
      try {
        // CONNECTING (0) or OPEN (1): close it ourselves. CLOSING/CLOSED: nothing to do.
        if (ws.readyState === 0 || ws.readyState === 1) {
          ws.close(CloseCodes.Normal);
        }
      } catch {
        // ignore
      }
    }
    this.resolveClosed({ error });
    return error;
  }
}

/** Validates a subscribe reply or a poll entry. */
export function toEntry(value: unknown): ChannelEntry {
  const v = value as Partial<ChannelEntry> | null;
  if (v === null || typeof v !== "object" || typeof v.epoch !== "string" || typeof v.offset !== "number") {
    throw new HeraldError(ClientErrorCodes.BadResponse, "a channel entry without epoch and offset");
  }
  const entry: ChannelEntry = {
    epoch: v.epoch,
    offset: v.offset,
    publications: Array.isArray(v.publications) ? v.publications : [],
  };
  if (typeof v.recovered === "boolean") {
    entry.recovered = v.recovered;
  }
  if (isSkippedRange(v.skipped)) {
    entry.skipped = { from: v.skipped.from, to: v.skipped.to };
  }
  return entry;
}

/** Whether a value is a `skipped` range, `{"from":…,"to":…}`. */
export function isSkippedRange(value: unknown): value is SkippedRange {
  const v = value as Partial<SkippedRange> | null | undefined;
  return v !== null && typeof v === "object" && typeof v.from === "number" && typeof v.to === "number" && v.from <= v.to;
}
