// The server's user commands as the JS client sees them: a server-side subscription (POST /api/subscribe) surfaces as a
// Subscription (`serverSubscribed`) that recovers like the client's own; an unsubscribe push ends it; a disconnect's
// close code says whether the client reconnects (4100–4499) or stops (4500–4999).
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { isFatal } from '../dist/index.js';
import { API_KEY, conditions, range, useServer, waitFor, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 60_000;
const SECRET = 'a-test-secret-that-is-long-enough-for-hs256';
const fixture = useServer({ Herald__Token__Secret: SECRET }, { minReconnectDelay: 20, maxReconnectDelay: 200 });

/** An HS256 token for `user`, valid for ten minutes. */
function tokenFor(user) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: user, iat: now, exp: now + 600 })}`;
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
}

async function api(path, body) {
  const res = await fetch(`${fixture.server.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST ${path} answered ${res.status}: ${text}`);
}

/** A client connected over WebSocket as `user`, whose `publication` events land in `received` (offsets of `channel`). */
async function connectAs(user, channel) {
  const client = fixture.makeClient({ transport: 'websocket', token: tokenFor(user) });
  const received = [];
  const cond = conditions();
  client.on('publication', (e) => {
    if (e.channel === channel) {
      received.push(e.offset);
    }
    cond.poke();
  });
  await client.connect();
  return { client, received, cond };
}

test('server-side subscribe with since: serverSubscribed, the recovered publications, then every offset once across a server-asked reconnect', { timeout: TEST_MS }, async () => {
  const channel = 'chat:js-server-sub';
  const { client, received, cond } = await connectAs('alice', channel);
  let epoch;
  for (let n = 1; n <= 3; n++) {
    epoch = (await fixture.server.publish(channel, { n })).epoch;
  }

  const surfaced = waitFor(client, 'serverSubscribed');
  await api('/api/subscribe', { user: 'alice', channel, since: { offset: 1, epoch } });
  const { subscription } = await surfaced;
  assert.equal(subscription.channel, channel);
  assert.equal(subscription.serverSide, true);
  assert.equal(client.getSubscription(channel), subscription);
  await cond.until(() => received.length >= 2, 'offsets 2 and 3');
  assert.deepEqual(received, [2, 3]);

  // The application disconnects alice with a "reconnect" code while publications go on; the client comes back and
  // resubscribes from its cursor.
  const reconnected = waitFor(client, 'state', (e) => e.state === 'connected');
  await api('/api/disconnect', { user: 'alice', code: 4100, reason: 'move along' });
  for (let n = 4; n <= 30; n++) {
    await fixture.server.publish(channel, { n });
  }
  await reconnected;
  await cond.until(() => received.length >= 29, () => `offsets up to 30 (have ${received.length})`);
  assert.deepEqual(received, range(2, 30));
  assert.equal(subscription.position.offset, 30);
});

test('server-side unsubscribe: serverUnsubscribed, and the subscription ends', { timeout: TEST_MS }, async () => {
  const channel = 'chat:js-server-unsub';
  const { client } = await connectAs('bob', channel);
  const surfaced = waitFor(client, 'serverSubscribed');
  await api('/api/subscribe', { user: 'bob', channel });
  const { subscription } = await surfaced;
  await subscription.ready(10_000);

  const ended = waitFor(client, 'serverUnsubscribed');
  const subEnded = waitFor(subscription, 'unsubscribed');
  await api('/api/unsubscribe', { user: 'bob', channel });
  const e = await ended;
  assert.equal(e.subscription, subscription);
  assert.equal(e.reason, 'unsubscribed by the server');
  assert.equal((await subEnded).channel, channel);
  assert.equal(subscription.state, 'unsubscribed');
  assert.equal(client.getSubscription(channel), undefined);
});

test('disconnect with a "do not reconnect" code (4500–4999): the client stops with a fatal error', { timeout: TEST_MS }, async () => {
  const { client } = await connectAs('carol', 'chat:none');
  const states = [];
  client.on('state', (e) => states.push(e));
  const failed = waitFor(client, 'error');
  await api('/api/disconnect', { user: 'carol', code: 4567, reason: 'banned' });
  const { error } = await failed;
  assert.equal(error.closeCode, 4567);
  assert.equal(isFatal(error), true);
  await withTimeout(
    (async () => {
      while (client.state !== 'disconnected') {
        await waitFor(client, 'state');
      }
    })(),
    10_000,
    'the client to stop',
  );
  assert.equal(states.filter((e) => e.state === 'connected').length, 0, `no reconnect: ${JSON.stringify(states)}`);
  await assert.rejects(client.publish('chat:none', 1), (err) => err.code === 'disconnected');
});
