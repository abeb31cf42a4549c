import { HttpPollingTransport } from "./transport_poll.js";
import type { TransportHost } from "./types.js";

/**
 * Long polling: `POST /poll` with `wait` seconds. The server holds the poll until a publication arrives in any of
 * the channels or the wait runs out; the client asks again at once.
 */
export class LongPollTransport extends HttpPollingTransport {
  readonly name = "longpoll" as const;
  protected readonly wait: number;

  constructor(baseUrl: string, host: TransportHost, fetchFn: typeof fetch | undefined, longPollWait: number) {
    super(baseUrl, host, fetchFn);
    this.wait = longPollWait;
  }

  protected pauseAfter(news: boolean, _fullBatch: boolean, elapsedMs: number): number {
    // A held poll that came back early with nothing (the server is stopping) must not turn into a busy loop.
    return !news && elapsedMs < 1000 ? 500 : 0;
  }
}
