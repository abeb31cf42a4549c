// Presence across transports, against the real Herald server: polling clients (long and short) are listed under their
// client id with their info while they poll, and leave once their lease runs out. The server runs with a short
// Herald:PollPresenceTimeout (2 s) so that expiry is observable quickly.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../test-support/server.mjs';

const TEST_MS = 60_000;

const fixture = useServer({ Herald__PollPresenceTimeout: '00:00:02' });
const makeClient = fixture.makeClient;

/** Re-checks `check` (async; returns a value when satisfied, else undefined) until it holds or `ms` pass. */
async function until(check, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last.ok) {
      return last.value;
    }
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${ms} ms waiting for ${what}; last seen: ${JSON.stringify(last.value)}`);
    }
    // A short pause between presence queries: the condition lives on the server, so it can only be asked again.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function join(client, channel) {
  const sub = client.subscribe(channel);
  await client.connect();
  await sub.ready(15_000);
}

test('long-poll and short-poll clients are present with their info, then leave when the lease expires', { timeout: TEST_MS }, async () => {
  const channel = `chat:presence-${process.pid}-${Date.now().toString(36)}`;
  const watcher = makeClient({ transport: 'websocket', info: { name: 'Wanda' } });
  const longPoller = makeClient({ transport: 'longpoll', longPollWait: 2, info: { name: 'Lena', avatar: 'l.png' } });
  const shortPoller = makeClient({ transport: 'poll', pollInterval: 200, info: { name: 'Sid' } });
  assert.match(longPoller.clientId, /^[0-9a-f]{32}$/);
  assert.notEqual(longPoller.clientId, shortPoller.clientId);

  await join(watcher, channel);
  await join(longPoller, channel);
  await join(shortPoller, channel);

  const present = await until(async () => {
    const p = await watcher.presence(channel);
    return { ok: longPoller.clientId in p && shortPoller.clientId in p, value: p };
  }, 'both polling clients in presence');
  assert.deepEqual(present[longPoller.clientId], { user: '', client: longPoller.clientId, info: { name: 'Lena', avatar: 'l.png' } });
  assert.deepEqual(present[shortPoller.clientId], { user: '', client: shortPoller.clientId, info: { name: 'Sid' } });
  const own = Object.values(present).filter((e) => e.info?.name === 'Wanda');
  assert.equal(own.length, 1, 'the WebSocket client is present with its connect info');
  assert.equal(Object.keys(present).length, 3);

  // Polling clients answer presence too (over POST /cmd), and see the same members.
  const fromPoller = await shortPoller.presence(channel);
  assert.deepEqual(Object.keys(fromPoller).sort(), Object.keys(present).sort());

  // They stop polling: nothing tells the server, so they stay until the lease (wait + 2 s) runs out, then leave.
  longPoller.disconnect();
  shortPoller.disconnect();
  const after = await until(async () => {
    const p = await watcher.presence(channel);
    return { ok: !(longPoller.clientId in p) && !(shortPoller.clientId in p), value: p };
  }, 'both polling clients to leave presence');
  assert.deepEqual(Object.values(after).map((e) => e.info?.name), ['Wanda']);
});

test('the client id is stable for a client across reconnects and transport switches', { timeout: TEST_MS }, async () => {
  const channel = `chat:stable-${process.pid}-${Date.now().toString(36)}`;
  const watcher = makeClient({ transport: 'websocket' });
  const client = makeClient({ transport: 'poll', pollInterval: 200, info: { name: 'Mo' } });
  const id = client.clientId;
  await join(watcher, channel);
  await join(client, channel);
  await until(async () => { const p = await watcher.presence(channel); return { ok: id in p, value: p }; }, 'the short poller in presence');
  client.setTransport('longpoll');
  await client.connect();
  assert.equal(client.clientId, id);
  const p = await until(async () => { const p = await watcher.presence(channel); return { ok: p[id]?.info?.name === 'Mo', value: p }; }, 'the same entry after the switch');
  assert.equal(Object.values(p).filter((e) => e.info?.name === 'Mo').length, 1, 'one entry per client id');
});

// Issue 4: after a move from polling to a WebSocket the client was listed twice, under its poll id and its
// connection's id, until the poll lease ran out (here the poll's 20 s wait plus 2 s).
test('a client that moves from long polling to a WebSocket is listed once', { timeout: TEST_MS }, async () => {
  const channel = `chat:moving-${process.pid}-${Date.now().toString(36)}`;
  const client = makeClient({ transports: ['longpoll', 'websocket'], longPollWait: 20, info: { name: 'Mo' } });
  const id = client.clientId;
  await join(client, channel);
  assert.equal(client.transport, 'longpoll');
  await until(async () => { const p = await client.presence(channel); return { ok: id in p, value: p }; }, 'the poll lease');

  await client.switchTransport('websocket');
  const p = await until(async () => {
    const p = await client.presence(channel);
    return { ok: !(id in p) && Object.keys(p).length === 1, value: p };
  }, 'one entry, the WebSocket connection, and no poll lease');
  assert.deepEqual(Object.values(p).map((e) => e.info), [{ name: 'Mo' }]);
});
