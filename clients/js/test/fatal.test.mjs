// Refusals no retry can cure stop the client with that error, on every transport, instead of sending the same
// thing round the transports forever. The case: an `info` option over the server's Herald:MaxClientInfoBytes (1,024).
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldError, isFatal } from '../dist/index.js';
import { useServer, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 30_000;
// {"n":"xxx…"}: 1,025 bytes of JSON text, one over the default limit.
const OVERSIZED_INFO = { n: 'x'.repeat(1025 - 8) };

const fixture = useServer({}, { minReconnectDelay: 20, maxReconnectDelay: 200 });

function makeClient(options) {
  const client = fixture.makeClient(options);
  const states = [];
  client.on('state', (e) => states.push(e));
  return { client, states };
}

function assertPayloadTooLarge(error) {
  assert.ok(error instanceof HeraldError, `expected a HeraldError, got ${error}`);
  assert.equal(error.code, 'payload_too_large');
  assert.match(error.message, /MaxClientInfoBytes/);
  assert.equal(isFatal(error), true);
}

test('the info option is exactly 1,025 bytes of JSON', () => {
  assert.equal(JSON.stringify(OVERSIZED_INFO).length, 1025);
});

test('oversized info over WebSocket: connect() rejects with payload_too_large, without falling back', { timeout: TEST_MS }, async () => {
  const { client, states } = makeClient({ info: OVERSIZED_INFO });
  const error = await withTimeout(client.connect().then(() => undefined, (e) => e), 15_000, 'connect() to settle');
  assertPayloadTooLarge(error);
  assert.deepEqual(
    states.filter((e) => e.state === 'connecting').map((e) => e.transport),
    ['websocket'],
    'one attempt, on the first transport only',
  );
  assert.equal(client.state, 'disconnected');
});

for (const transport of ['longpoll', 'poll']) {
  test(`oversized info over ${transport}: the first poll is refused, ready() rejects with payload_too_large and the client stops`, { timeout: TEST_MS }, async () => {
    const { client, states } = makeClient({ transport, info: OVERSIZED_INFO, pollInterval: 50, longPollWait: 2 });
    const sub = client.subscribe('chat:too-much-info');
    // Opening a polling transport is a ping, which carries no info: connect() succeeds, the poll is refused.
    await client.connect();
    const error = await withTimeout(sub.ready(20_000).then(() => undefined, (e) => e), 15_000, 'ready() to settle');
    assertPayloadTooLarge(error);
    assert.equal(client.state, 'disconnected');
    assert.equal(states.filter((e) => e.state === 'connecting').length, 1, `no reconnect: ${JSON.stringify(states)}`);
    // The subscription stays, to resume on the next connect().
    assert.equal(sub.state, 'subscribing');
  });
}

test('info at the limit (1,024 bytes) is accepted and shows in presence', { timeout: TEST_MS }, async () => {
  const info = { n: 'x'.repeat(1024 - 8) };
  assert.equal(JSON.stringify(info).length, 1024);
  const { client } = makeClient({ info });
  const sub = client.subscribe('chat:info-at-limit');
  await client.connect();
  await sub.ready(15_000);
  const present = await client.presence('chat:info-at-limit');
  assert.deepEqual(Object.values(present).map((e) => e.info), [info]);
});
