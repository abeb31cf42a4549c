// Starts the real Herald server (the built herald.dll) for the client tests, and small helpers to wait on events.
// HERALD_DLL overrides the build to test (default: the Release build of src/Herald.Server, relative to clients/js).

import { spawn } from 'node:child_process';
import { after, afterEach, before } from 'node:test';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { HeraldClient } from '../dist/index.js';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, '..'); // clients/js
export const DLL = path.resolve(packageDir, process.env.HERALD_DLL || '../../src/Herald.Server/bin/Release/net10.0/herald.dll');
export const API_KEY = 'k';
const STARTUP_MS = 60_000;

/** Rejects with a clear message if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first `event` of `emitter` (a HeraldClient or Subscription) that satisfies `predicate`. */
export function waitFor(emitter, event, predicate = () => true, ms = 15_000) {
  let off;
  const promise = new Promise((resolve) => {
    off = emitter.on(event, (value) => {
      if (predicate(value)) {
        off();
        resolve(value);
      }
    });
  });
  return withTimeout(promise, ms, `'${event}'`).finally(() => off());
}

/** Resolves once the client is connected on `transport` (or at once if it already is). */
export function waitConnected(client, transport, ms = 15_000) {
  if (client.state === 'connected' && (transport === undefined || client.transport === transport)) {
    return Promise.resolve();
  }
  return waitFor(client, 'state', (e) => e.state === 'connected' && (transport === undefined || e.transport === transport), ms);
}

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

/** Starts herald on a free port and waits for /healthz. Returns { url, publish(channel, data), stop() }. */
export async function startServer(extraEnv = {}) {
  if (!existsSync(DLL)) {
    throw new Error(`herald.dll not found at ${DLL}: run 'dotnet build src/Herald.Server -c Release' first, or set HERALD_DLL`);
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let log = '';
  const child = spawn('dotnet', [DLL, '--urls', url], {
    env: {
      ...process.env,
      DOTNET_NOLOGO: '1',
      Herald__AllowAnonymous: 'true',
      Herald__Namespaces__chat__AllowClientPublish: 'true',
      Herald__Namespaces__chat__HistorySize: '1000',
      Herald__Namespaces__chat__Presence: 'true',
      Herald__ApiKey: API_KEY,
      Herald__MaxCommandsPerSecond: '100000',
      Herald__MaxPublishesPerSecond: '100000',
      Herald__MaxHttpRequestsPerSecondPerIp: '100000',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => (log = (log + d).slice(-20_000)));
  child.stderr.on('data', (d) => (log = (log + d).slice(-20_000)));
  const exited = new Promise((resolve) => child.once('exit', resolve));

  const deadline = Date.now() + STARTUP_MS;
  let last = 'no attempt yet';
  let delay = 50;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`herald exited early (code ${child.exitCode}):\n${log}`);
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) {
        break;
      }
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`herald did not become healthy within ${STARTUP_MS} ms (last: ${last}):\n${log}`);
    }
    // Polling /healthz with a growing pause is how the start-up deadline is enforced (not synchronisation on a guess).
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 500);
  }

  return {
    url,
    log: () => log,
    /** POST /api/publish with the API key. */
    async publish(channel, data) {
      const res = await fetch(`${url}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel, data }),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      if (res.status !== 200) {
        throw new Error(`POST /api/publish answered ${res.status}: ${text}`);
      }
      return JSON.parse(text);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/**
 * A condition that is re-checked whenever `poke()` is called (after every publication received or published), so a
 * test waits for "n offsets received" without sleeping.
 */
export function conditions(defaultMs = 20_000) {
  const waiters = new Set();
  return {
    poke() {
      for (const w of [...waiters]) {
        if (w.predicate()) {
          waiters.delete(w);
          w.resolve();
        }
      }
    },
    until(predicate, what, ms = defaultMs) {
      if (predicate()) {
        return Promise.resolve();
      }
      let waiter;
      const promise = new Promise((resolve) => {
        waiter = { predicate, resolve };
        waiters.add(waiter);
      });
      return withTimeout(promise, ms, what).finally(() => waiters.delete(waiter));
    },
  };
}

/** The integers from..to, inclusive. */
export function range(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/**
 * Publishes `{ n }` to `channel` back to back until `stop()`, calling `onPublished` after each, so a test can
 * switch transports under a steady stream. `published` is the offset of the last publication.
 */
export function publishContinuously(server, channel, onPublished) {
  let published = 0;
  let stopped = false;
  const running = (async () => {
    while (!stopped) {
      const r = await server.publish(channel, { n: published + 1 });
      published = r.offset;
      onPublished();
    }
  })();
  return {
    get published() {
      return published;
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}

/**
 * The setup every client test file shares: a server started once for the file (with `env` added to its environment),
 * and `makeClient(options)`, whose clients (with quick reconnects, `clientDefaults` and `options`) are disconnected
 * after each test. Registers node:test's before/afterEach/after hooks; call it at the top level of a test file.
 */
export function useServer(env = {}, clientDefaults = {}) {
  const clients = new Set();
  let starting;
  const fixture = {
    /** The running server (see startServer); set once `ready()` has resolved. */
    server: undefined,
    /**
     * Starts the server once and resolves with it. A file's own `before` hooks await it: on Node 20 root-level
     * `before` hooks run as they are registered, without waiting for the previous one.
     */
    ready() {
      starting ??= startServer(env).then((server) => (fixture.server = server));
      return starting;
    },
    makeClient(options = {}) {
      const client = new HeraldClient(fixture.server.url, {
        WebSocket,
        EventSource, // Node 20 has none; the `eventsource` package is the WhatWG one

        minReconnectDelay: 50,
        maxReconnectDelay: 1000,
        ...clientDefaults,
        ...options,
      });
      clients.add(client);
      return client;
    },
  };
  before(() => fixture.ready());
  afterEach(() => {
    for (const client of clients) {
      client.disconnect();
    }
    clients.clear();
  });
  after(async () => {
    await fixture.server?.stop();
  });
  return fixture;
}

/**
 * The common start of the recovery tests: connects `client`, waits for `sub` to be ready and to receive the channel's
 * first publication (`{ n: 1 }`), then disconnects and publishes `{ n: i }` for i = `from`..`to` while it is offline.
 * Returns the subscription's ready answer (its epoch).
 */
export async function receiveOneThenMissWhileOffline({ client, sub, server, channel, from, to, ms = 20_000 }) {
  await withTimeout(client.connect(), ms, 'connect()');
  const start = await sub.ready(ms);
  const first = waitFor(sub, 'publication');
  await server.publish(channel, { n: 1 });
  await first;
  client.disconnect();
  for (let i = from; i <= to; i++) {
    await server.publish(channel, { n: i });
  }
  return start;
}
