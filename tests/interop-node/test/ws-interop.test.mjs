// Interop tests: the real Herald server (the built `herald.dll`), driven by the `ws` npm package — a WebSocket
// client that nobody on this project wrote. If Herald's RFC 6455 handshake, framing or close handling drifted from
// what other implementations expect, these tests notice where the .NET tests (which use .NET's own client) cannot.
//
// The herald.msgpack subprotocol is driven the same way with `@msgpack/msgpack`, a MessagePack codec nobody on this
// project wrote either.
//
// Run: `npm ci && node --test` in tests/interop-node, after `dotnet build Herald.slnx -c Release`.
// HERALD_DLL overrides the server build to test (default: the Release build of src/Herald.Server).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { decodeMulti, encode } from '@msgpack/msgpack';

const here = path.dirname(fileURLToPath(import.meta.url));
const testDir = path.resolve(here, '..'); // tests/interop-node
const dll = path.resolve(
  testDir,
  process.env.HERALD_DLL || '../../src/Herald.Server/bin/Release/net10.0/herald.dll',
);

const API_KEY = `interop-${randomBytes(12).toString('hex')}`;
const STEP_MS = 5_000; // the limit for any single wait on the server
const STARTUP_MS = 60_000; // the limit for the server to become healthy
const TEST_MS = 30_000;

let server; // the child process
let serverLog = ''; // its output, for failure messages
let baseUrl; // http://127.0.0.1:<port>
let wsUrl; // ws://127.0.0.1:<port>/ws
const openSockets = new Set();

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** Rejects with a clear message if `promise` does not settle within `ms`; `what` is a string or a function giving one. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const description = typeof what === 'function' ? what() : what;
      reject(new Error(`timed out after ${ms} ms waiting for ${description}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A port that was free a moment ago (the server binds it right after). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function tail(text, lines = 60) {
  return text.split('\n').slice(-lines).join('\n');
}

async function waitForHealthy(deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  let lastProblem = 'no attempt yet';
  let delay = 50;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`herald exited early (code ${server.exitCode}, signal ${server.signalCode}):\n${tail(serverLog)}`);
    }
    try {
      const res = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) {
        return;
      }
      lastProblem = `HTTP ${res.status}`;
    } catch (err) {
      lastProblem = err.cause?.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 500);
  }
  throw new Error(`herald did not become healthy within ${deadlineMs} ms (last: ${lastProblem}):\n${tail(serverLog)}`);
}

/** POST /api/publish with the API key; returns the parsed {epoch, offset}. */
async function apiPublish(channel, data) {
  const res = await withTimeout(
    fetch(`${baseUrl}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
      signal: AbortSignal.timeout(STEP_MS),
    }),
    STEP_MS,
    `POST /api/publish to ${channel}`,
  );
  const text = await withTimeout(res.text(), STEP_MS, 'the /api/publish body');
  assert.equal(res.status, 200, `POST /api/publish answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

/**
 * A Herald client on top of `ws`: splits every text frame on '\n', keeps every message it received, and lets a test
 * wait for a reply by id, for pushes, or for the close.
 */
class HeraldClient {
  constructor(ws) {
    this.ws = ws;
    this.messages = []; // every parsed message, in arrival order
    this.frames = 0;
    this.nextId = 1;
    this.waiters = new Set();
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        openSockets.delete(ws);
        resolve({ code, reason: reason.toString() });
        this.wake();
      });
    });
    ws.on('message', (data, isBinary) => {
      this.frames++;
      if (isBinary) {
        this.messages.push({ unexpectedBinary: true });
      } else {
        for (const line of data.toString('utf8').split('\n')) {
          if (line.trim() === '') continue;
          let message;
          try {
            message = JSON.parse(line);
          } catch {
            message = { unparsable: line };
          }
          this.messages.push(message);
        }
      }
      this.wake();
    });
    ws.on('error', () => {}); // surfaced through 'close' / the waits
  }

  /** Opens a WebSocket to /ws offering the herald.json subprotocol; resolves once open (handshake validated by ws). */
  static async open({ protocols = ['herald.json'], onUpgrade } = {}) {
    const ws = new WebSocket(wsUrl, protocols, { handshakeTimeout: STEP_MS });
    openSockets.add(ws);
    if (onUpgrade) ws.once('upgrade', onUpgrade);
    const client = new HeraldClient(ws);
    await withTimeout(
      new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered HTTP ${res.statusCode}`)));
      }),
      STEP_MS,
      'the WebSocket to open',
    );
    return client;
  }

  /** Opens and sends `connect`; returns the client and the connect result. */
  static async connected() {
    const client = await HeraldClient.open();
    const reply = await client.command({ op: 'connect' });
    assert.ok(reply.result, `connect failed: ${JSON.stringify(reply)}`);
    client.info = reply.result;
    return client;
  }

  wake() {
    for (const waiter of [...this.waiters]) waiter();
  }

  /**
   * Resolves with the first value `ready()` returns other than undefined, re-checking on every message; rejects if the
   * connection closes first or after STEP_MS.
   */
  until(ready, what) {
    let check;
    const pending = new Promise((resolve, reject) => {
      check = () => {
        let value;
        try {
          value = ready();
        } catch (err) {
          reject(err);
          return;
        }
        if (value !== undefined) {
          resolve(value);
        } else if (this.ws.readyState === WebSocket.CLOSED) {
          reject(new Error(`connection closed while waiting for ${typeof what === 'function' ? what() : what}`));
        }
      };
      this.waiters.add(check);
      check();
    });
    return withTimeout(pending, STEP_MS, what).finally(() => this.waiters.delete(check));
  }

  /** Resolves with the first received message (from index `from`) matching `predicate`. */
  waitFor(predicate, what, { from = 0 } = {}) {
    return this.until(() => this.messages.slice(from).find(predicate), what);
  }

  /** Waits until `count` pushes for `channel` have arrived; returns their `pub`s in arrival order. */
  waitForPushes(channel, count, what) {
    return this.until(
      () => {
        const pubs = this.pushes(channel);
        return pubs.length >= count ? pubs : undefined;
      },
      () => `${what} (have ${this.pushes(channel).length} of ${count})`,
    );
  }

  pushes(channel) {
    return this.messages.filter((m) => m.push?.channel === channel).map((m) => m.push.pub);
  }

  sendRaw(text) {
    this.ws.send(text);
  }

  /** Sends one command (an id is added) and resolves with its reply: {id, result} or {id, error}. */
  command(body) {
    const id = this.nextId++;
    this.sendRaw(JSON.stringify({ id, ...body }));
    return this.waitFor((m) => m.id === id && ('result' in m || 'error' in m), `the reply to ${body.op} (id ${id})`);
  }

  async close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000, 'bye');
    }
    try {
      return await withTimeout(this.closed, STEP_MS, 'the close handshake');
    } catch (err) {
      this.ws.terminate();
      throw err;
    }
  }
}

/**
 * A herald.msgpack client on top of `ws` and `@msgpack/msgpack`: decodes every binary frame as MessagePack values back
 * to back (decodeMulti) and keeps them; text frames are recorded as unexpected.
 */
class MsgPackClient extends HeraldClient {
  constructor(ws) {
    super(ws);
    ws.removeAllListeners('message');
    ws.on('message', (data, isBinary) => {
      this.frames++;
      if (!isBinary) {
        this.messages.push({ unexpectedText: data.toString('utf8') });
      } else {
        try {
          for (const message of decodeMulti(data)) this.messages.push(message);
        } catch (err) {
          this.messages.push({ undecodable: err.message });
        }
      }
      this.wake();
    });
  }

  static async open() {
    const ws = new WebSocket(wsUrl, ['herald.msgpack'], { handshakeTimeout: STEP_MS });
    openSockets.add(ws);
    const client = new MsgPackClient(ws);
    await withTimeout(
      new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      }),
      STEP_MS,
      'the msgpack WebSocket to open',
    );
    return client;
  }

  static async connected() {
    const client = await MsgPackClient.open();
    const reply = await client.command({ op: 'connect' });
    assert.ok(reply.result, `connect failed: ${JSON.stringify(reply)}`);
    return client;
  }

  sendRaw(bytes) {
    this.ws.send(bytes, { binary: true });
  }

  command(body) {
    const id = this.nextId++;
    this.sendRaw(encode({ id, ...body }));
    return this.waitFor((m) => m.id === id && ('result' in m || 'error' in m), `the reply to ${body.op} (id ${id})`);
  }
}

/** POST /api/publish?channel=… with an application/octet-stream body. */
async function apiPublishBytes(channel, bytes) {
  const res = await fetch(`${baseUrl}/api/publish?channel=${encodeURIComponent(channel)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/octet-stream' },
    body: bytes,
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST /api/publish (octet-stream) answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

// ---------------------------------------------------------------------------------------------------------------
// the server

before(async () => {
  assert.ok(existsSync(dll), `server build not found at ${dll}; run 'dotnet build Herald.slnx -c Release' or set HERALD_DLL`);
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  wsUrl = `ws://127.0.0.1:${port}/ws`;
  const env = {
    ...process.env,
    ASPNETCORE_ENVIRONMENT: 'Production',
    DOTNET_NOLOGO: '1',
    Herald__ApiKey: API_KEY,
    Herald__AllowAnonymous: 'true',
    Herald__Namespaces__chat__AllowClientPublish: 'true',
    Herald__Namespaces__chat__HistorySize: '1000',
    Herald__Namespaces__chat__Presence: 'true',
  };
  delete env.ASPNETCORE_URLS; // --urls decides
  server = spawn('dotnet', [dll, '--urls', baseUrl], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (chunk) => {
    serverLog += chunk.toString();
    if (serverLog.length > 200_000) serverLog = serverLog.slice(-100_000);
  };
  server.stdout.on('data', collect);
  server.stderr.on('data', collect);
  server.on('error', (err) => {
    serverLog += `\n[spawn error] ${err.message}\n`;
  });
  await waitForHealthy(STARTUP_MS);
}, { timeout: STARTUP_MS + 10_000 });

after(async () => {
  for (const ws of openSockets) ws.terminate();
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  try {
    await withTimeout(exited, 10_000, 'herald to stop after SIGTERM');
  } catch {
    server.kill('SIGKILL');
    await withTimeout(exited, 5_000, 'herald to stop after SIGKILL').catch(() => {});
  }
}, { timeout: 20_000 });

// ---------------------------------------------------------------------------------------------------------------
// the tests

describe('herald over the ws client', () => {
  test('(a) handshake: 101, a valid Sec-WebSocket-Accept and the herald.json subprotocol', { timeout: TEST_MS }, async () => {
    let upgrade;
    const client = await HeraldClient.open({ onUpgrade: (res) => (upgrade = res) });
    try {
      // ws rejects the connection itself if Sec-WebSocket-Accept is wrong, so being open proves it was right.
      assert.equal(upgrade?.statusCode, 101);
      assert.equal(upgrade.headers.upgrade?.toLowerCase(), 'websocket');
      assert.match(upgrade.headers.connection ?? '', /upgrade/i);
      assert.equal(client.ws.protocol, 'herald.json');
      assert.equal(upgrade.headers['sec-websocket-protocol'], 'herald.json');
      const reply = await client.command({ op: 'connect' });
      assert.ok(reply.result, `connect failed: ${JSON.stringify(reply)}`);
      assert.equal(typeof reply.result.client, 'string');
    } finally {
      await client.close();
    }

    // And the accept value for the RFC 6455 section 1.3 sample key, checked by hand rather than by ws.
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const expected = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    assert.equal(expected, 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    const res = await withTimeout(
      new Promise((resolve, reject) => {
        const req = http.request(`${baseUrl}/ws`, {
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': key,
            'sec-websocket-protocol': 'herald.json',
          },
        });
        req.on('upgrade', (response, socket) => {
          socket.destroy();
          resolve(response);
        });
        req.on('response', (response) => resolve(response));
        req.on('error', reject);
        req.end();
      }),
      STEP_MS,
      'a raw upgrade response',
    );
    assert.equal(res.statusCode, 101);
    assert.equal(res.headers['sec-websocket-accept'], expected);
    assert.equal(res.headers['sec-websocket-protocol'], 'herald.json');
  });

  test('(b) connect, subscribe, publish from another client and from /api/publish: pushes in offset order', { timeout: TEST_MS }, async () => {
    const channel = 'chat:lobby';
    const subscriber = await HeraldClient.connected();
    const publisher = await HeraldClient.connected();
    try {
      const sub = await subscriber.command({ op: 'subscribe', channel });
      assert.ok(sub.result, `subscribe failed: ${JSON.stringify(sub)}`);
      assert.equal(typeof sub.result.epoch, 'string');
      assert.equal(typeof sub.result.offset, 'number');
      const start = sub.result.offset;

      // A publication from a second ws client reaches the first as a push.
      const first = await publisher.command({ op: 'publish', channel, data: { text: 'hi from ws', n: 1 } });
      assert.ok(first.result, `publish failed: ${JSON.stringify(first)}`);
      assert.equal(first.result.epoch, sub.result.epoch);
      assert.equal(first.result.offset, start + 1);
      const [pub1] = await subscriber.waitForPushes(channel, 1, 'the push of the ws publication');
      assert.equal(pub1.offset, start + 1);
      assert.deepEqual(pub1.data, { text: 'hi from ws', n: 1 });
      assert.equal(pub1.info?.client, publisher.info.client, 'info names the publishing connection');

      // One from the server API too.
      const api = await apiPublish(channel, { text: 'hi from the api', n: 2 });
      assert.equal(api.epoch, sub.result.epoch);
      assert.equal(api.offset, start + 2);
      const pubs = await subscriber.waitForPushes(channel, 2, 'the push of the API publication');
      assert.equal(pubs[1].offset, start + 2);
      assert.deepEqual(pubs[1].data, { text: 'hi from the api', n: 2 });

      // A burst from both sides, some batched into one frame: every push arrives once, in offset order, gap-free.
      const burst = [];
      for (let n = 3; n <= 12; n++) {
        burst.push(n % 2 ? publisher.command({ op: 'publish', channel, data: { n } }) : apiPublish(channel, { n }));
      }
      const batchIds = [publisher.nextId++, publisher.nextId++];
      publisher.sendRaw(batchIds.map((id, i) => JSON.stringify({ id, op: 'publish', channel, data: { n: 13 + i } })).join('\n'));
      await withTimeout(Promise.all(burst), STEP_MS, 'the burst of publishes');
      for (const id of batchIds) {
        const reply = await publisher.waitFor((m) => m.id === id, `the reply to batched publish ${id}`);
        assert.ok(reply.result, `batched publish failed: ${JSON.stringify(reply)}`);
      }
      const all = await subscriber.waitForPushes(channel, 14, 'all 14 pushes');
      assert.deepEqual(all.map((p) => p.offset), Array.from({ length: 14 }, (_, i) => start + 1 + i));
      assert.deepEqual(all.slice(2).map((p) => p.data.n).sort((x, y) => x - y), Array.from({ length: 12 }, (_, i) => 3 + i));
      assert.equal(subscriber.messages.filter((m) => m.error).length, 0, 'no error replies');
      assert.equal(publisher.pushes(channel).length, 0, 'the publisher did not subscribe, so gets no pushes');
    } finally {
      await Promise.all([subscriber.close(), publisher.close()]);
    }
  });

  test('(c) recovery: reconnecting with since {offset, epoch} returns exactly the missed publications', { timeout: TEST_MS }, async () => {
    const channel = `chat:recovery-${randomBytes(4).toString('hex')}`;
    const first = await HeraldClient.connected();
    const sub = await first.command({ op: 'subscribe', channel });
    assert.ok(sub.result, `subscribe failed: ${JSON.stringify(sub)}`);
    const epoch = sub.result.epoch;
    await apiPublish(channel, { text: 'seen 1' });
    await apiPublish(channel, { text: 'seen 2' });
    const seen = await first.waitForPushes(channel, 2, 'the pushes before the disconnect');
    const last = seen.at(-1).offset;
    const closed = await first.close();
    assert.equal(closed.code, 1000);

    const missed = [];
    for (let i = 1; i <= 3; i++) {
      missed.push(await apiPublish(channel, { text: `missed ${i}` }));
    }
    assert.deepEqual(missed.map((m) => m.offset), [last + 1, last + 2, last + 3]);

    const second = await HeraldClient.connected();
    try {
      const again = await second.command({ op: 'subscribe', channel, since: { offset: last, epoch } });
      assert.ok(again.result, `recovering subscribe failed: ${JSON.stringify(again)}`);
      assert.equal(again.result.recovered, true);
      assert.equal(again.result.epoch, epoch);
      assert.equal(again.result.offset, last + 3);
      assert.deepEqual(
        again.result.publications.map((p) => ({ offset: p.offset, data: p.data })),
        [1, 2, 3].map((i) => ({ offset: last + i, data: { text: `missed ${i}` } })),
      );

      // Then live messages, with no duplicate at the seam: the next push is the next offset, and the only one.
      await apiPublish(channel, { text: 'live' });
      const live = await second.waitForPushes(channel, 1, 'the first live push after recovery');
      assert.deepEqual(live.map((p) => p.offset), [last + 4]);
      assert.deepEqual(live[0].data, { text: 'live' });
    } finally {
      await second.close();
    }
  });

  test('(d) a malformed command gets bad_request and the connection stays usable', { timeout: TEST_MS }, async () => {
    const client = await HeraldClient.connected();
    try {
      let from = client.messages.length;
      client.sendRaw('this is not json');
      const notJson = await client.waitFor((m) => m.error, 'the error for a non-JSON line', { from });
      assert.equal(notJson.error.code, 'bad_request');
      assert.equal(typeof notJson.error.message, 'string');

      from = client.messages.length;
      client.sendRaw('{"id":41,"op":42}'); // valid JSON, wrong type
      const mistyped = await client.waitFor((m) => m.error, 'the error for a mistyped command', { from });
      assert.equal(mistyped.error.code, 'bad_request');
      assert.equal(mistyped.id, 41, 'the error is correlated by id when the id could be read');

      // A malformed line batched with a valid one: only the bad line fails.
      const id = client.nextId++;
      from = client.messages.length;
      client.sendRaw(`{"id":42,"op":\n${JSON.stringify({ id, op: 'ping' })}`);
      const pong = await client.waitFor((m) => m.id === id, 'the ping batched after a malformed line', { from });
      assert.ok(pong.result, `ping failed: ${JSON.stringify(pong)}`);
      assert.ok(
        client.messages.slice(from).some((m) => m.error?.code === 'bad_request'),
        'the malformed half of the batch got bad_request',
      );

      // Still open and still working.
      assert.equal(client.ws.readyState, WebSocket.OPEN);
      const sub = await client.command({ op: 'subscribe', channel: 'chat:after-bad-input' });
      assert.ok(sub.result, `subscribe after bad input failed: ${JSON.stringify(sub)}`);
      const pub = await client.command({ op: 'publish', channel: 'chat:after-bad-input', data: { ok: true } });
      assert.ok(pub.result, `publish after bad input failed: ${JSON.stringify(pub)}`);
      const [push] = await client.waitForPushes('chat:after-bad-input', 1, 'the push after bad input');
      assert.deepEqual(push.data, { ok: true });
    } finally {
      await client.close();
    }
  });

  test('(e) a binary message closes the connection with 1003', { timeout: TEST_MS }, async () => {
    const client = await HeraldClient.connected();
    client.ws.send(Buffer.from('{"id":9,"op":"ping"}'), { binary: true });
    const { code } = await withTimeout(client.closed, STEP_MS, 'the close after a binary message');
    assert.equal(code, 1003);
    assert.equal(client.messages.filter((m) => m.id === 9).length, 0, 'the binary message was not executed');
  });
});

describe('herald.msgpack over ws and @msgpack/msgpack', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);

  test('(f) bytes reach msgpack as bin and json as b64 unchanged; JSON reaches msgpack as maps', { timeout: TEST_MS }, async () => {
    const packed = await MsgPackClient.connected();
    const json = await HeraldClient.connected();
    try {
      assert.equal(packed.ws.protocol, 'herald.msgpack');
      const channel = 'chat:interop-bin';
      assert.ok((await packed.command({ op: 'subscribe', channel })).result);
      assert.ok((await json.command({ op: 'subscribe', channel })).result);

      await apiPublishBytes(channel, all);
      await apiPublish(channel, { text: 'hé', n: [1, 2.5, null, true] });
      const own = await packed.command({ op: 'publish', channel, data: all.slice().reverse() });
      assert.equal(own.result?.offset, 3, `publish of a bin failed: ${JSON.stringify(own)}`);

      const pubs = await packed.waitForPushes(channel, 3, 'three pushes on the msgpack connection');
      assert.ok(pubs[0].data instanceof Uint8Array, 'a binary publication arrives as a bin');
      assert.deepEqual([...pubs[0].data], [...all]);
      assert.deepEqual(pubs[1].data, { text: 'hé', n: [1, 2.5, null, true] });
      assert.deepEqual([...pubs[2].data], [...all].reverse());
      assert.ok(packed.messages.every((m) => !m.unexpectedText && !m.undecodable), 'every frame was binary MessagePack');

      const jsonPubs = await json.waitForPushes(channel, 3, 'three pushes on the json connection');
      assert.equal(jsonPubs[0].data, undefined);
      assert.deepEqual([...Buffer.from(jsonPubs[0].b64, 'base64')], [...all]);
      assert.deepEqual([...Buffer.from(jsonPubs[2].b64, 'base64')], [...all].reverse());

      const history = await packed.command({ op: 'history', channel });
      assert.deepEqual([...history.result.publications[0].data], [...all]);
    } finally {
      await packed.close();
      await json.close();
    }
  });

  test('(g) malformed MessagePack gets bad_request and the connection goes on; a text frame closes with 1003', { timeout: TEST_MS }, async () => {
    const client = await MsgPackClient.connected();
    const from = client.messages.length;
    client.sendRaw(encode({ id: 77, op: 'ping' }).slice(0, -2));
    const refused = await client.waitFor((m) => m.error, 'the refusal of a truncated message', { from });
    assert.equal(refused.error.code, 'bad_request');
    const pong = await client.command({ op: 'ping' });
    assert.ok(pong.result, `ping after bad input failed: ${JSON.stringify(pong)}`);

    client.ws.send('{"id":9,"op":"ping"}');
    const { code } = await withTimeout(client.closed, STEP_MS, 'the close after a text message');
    assert.equal(code, 1003);
  });
});
