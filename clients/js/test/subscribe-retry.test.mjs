// A subscribe refused with "not now" (`rate_limited`) keeps the subscription and asks again after a backoff; only a
// "no" ends it. The server allows a burst of 3 commands per connection (Herald:MaxCommandsPerSecond=3): `connect`
// and two subscribes, so the other subscribes of a client with eight channels are refused at first.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { HeraldClient, isTransient } from '../dist/index.js';
import { conditions, range, startServer, waitFor, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 60_000;
const CHANNELS = range(1, 8).map((i) => `chat:rate-${i}`);

let server;

before(async () => {
  server = await startServer({ Herald__MaxCommandsPerSecond: '3' });
});

after(async () => {
  await server?.stop();
});

test('subscribes past the command rate are retried, and again after a dropped connection; nothing is lost or repeated', { timeout: TEST_MS }, async () => {
  const sockets = [];
  // `ws` sockets, remembered so that the test can cut one abruptly (terminate: no close frame).
  class TrackedWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  const client = new HeraldClient(server.url, { WebSocket: TrackedWebSocket, transport: 'websocket', minReconnectDelay: 20, maxReconnectDelay: 300 });
  const refusals = [];
  client.on('error', (e) => {
    if (e.channel !== undefined) {
      refusals.push(e.error);
    }
  });
  const received = new Map(CHANNELS.map((c) => [c, []]));
  const cond = conditions();
  const subs = CHANNELS.map((channel) =>
    client.subscribe(channel, (pub) => {
      received.get(channel).push(pub.offset);
      cond.poke();
    }),
  );
  try {
    await client.connect();
    await withTimeout(Promise.all(subs.map((s) => s.ready(20_000))), 20_000, 'every subscription confirmed');
    assert.ok(refusals.length > 0, 'the server refused some subscribes at first');
    assert.ok(refusals.every(isTransient), `only transient refusals: ${refusals.map((e) => e.code)}`);
    for (const channel of CHANNELS) {
      await server.publish(channel, 1);
    }
    await cond.until(() => [...received.values()].every((r) => r.length === 1), 'offset 1 on every channel');

    const before = refusals.length;
    const reconnected = waitFor(client, 'state', (e) => e.state === 'connected');
    sockets.at(-1).terminate();
    await reconnected;
    for (const channel of CHANNELS) {
      await server.publish(channel, 2);
      await server.publish(channel, 3);
    }
    await cond.until(() => [...received.values()].every((r) => r.length >= 3), () => `offsets 1..3 on every channel: ${JSON.stringify([...received])}`);
    for (const [channel, offsets] of received) {
      assert.deepEqual(offsets, [1, 2, 3], channel);
    }
    assert.ok(refusals.length > before, 'the resubscribes after the reconnect were refused at first too');
    assert.ok(subs.every((s) => s.state === 'subscribed'));
  } finally {
    client.disconnect();
  }
});
