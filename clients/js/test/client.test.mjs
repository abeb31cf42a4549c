// The TypeScript client (built to dist/) against the real Herald server: every transport, fallback, transport
// switches under load (each offset exactly once, in order), recovery, errors.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientErrorCodes, ErrorCodes, HeraldError } from '../dist/index.js';
import { conditions, publishContinuously, range, receiveOneThenMissWhileOffline, useServer, waitConnected, waitFor, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 90_000;
const WAIT_MS = 20_000;

const fixture = useServer({ Herald__Namespaces__tiny__HistorySize: '3' }, { pollInterval: 100 });
const makeClient = fixture.makeClient;

let channelCounter = 0;
function freshChannel(ns = 'chat') {
  return `${ns}:t${process.pid}-${++channelCounter}-${Date.now().toString(36)}`;
}

const TRANSPORTS = ['websocket', 'sse', 'longpoll', 'poll'];

describe('each transport', () => {
  for (const transport of TRANSPORTS) {
    test(`${transport}: receives publications in order, publishes, reads history and presence`, { timeout: TEST_MS }, async () => {
      const client = makeClient({ transport, longPollWait: 5 });
      const states = [];
      client.on('state', (e) => states.push(`${e.state}/${e.transport}`));
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      assert.equal(client.state, 'connected');
      assert.equal(client.transport, transport);
      assert.deepEqual(states, [`connecting/${transport}`, `connected/${transport}`]);

      const channel = freshChannel();
      const received = [];
      const cond = conditions();
      const sub = client.subscribe(channel, (e) => {
        received.push(e);
        cond.poke();
      });
      const position = await sub.ready(WAIT_MS);
      assert.equal(position.offset, 0);
      assert.equal(typeof position.epoch, 'string');

      for (let i = 1; i <= 15; i++) {
        const r = await fixture.server.publish(channel, { n: i });
        assert.equal(r.offset, i);
      }
      for (let i = 16; i <= 20; i++) {
        const r = await client.publish(channel, { n: i, from: 'client' });
        assert.deepEqual(r, { epoch: position.epoch, offset: i });
      }
      await cond.until(() => received.length >= 20, () => `20 publications (got ${received.length})`);
      assert.deepEqual(received.map((e) => e.offset), range(1, 20));
      assert.deepEqual(received.map((e) => e.data.n), range(1, 20));
      assert.ok(received.every((e) => e.channel === channel && e.epoch === position.epoch));
      assert.equal(received[0].info, undefined, 'API publications have no info');
      assert.equal(typeof received[19].info.client, 'string', 'client publications carry info');
      assert.deepEqual(sub.position, { epoch: position.epoch, offset: 20 });

      const history = await client.history(channel, { since: { offset: 10, epoch: position.epoch }, limit: 5 });
      assert.equal(history.offset, 20);
      assert.deepEqual(history.publications.map((p) => p.offset), range(11, 15));
      const newest = await client.history(channel, { limit: 3 });
      assert.deepEqual(newest.publications.map((p) => p.offset), range(18, 20));

      const presence = await client.presence(channel);
      const present = Object.values(presence);
      // Every transport is present: a WebSocket or SSE stream under the server's id, a polling client under its own clientId.
      assert.equal(present.length, 1, JSON.stringify(presence));
      if (transport !== 'websocket' && transport !== 'sse') {
        assert.deepEqual(presence[client.clientId], { user: '', client: client.clientId });
      }
    });
  }
});

describe('fallback', () => {
  test('a WebSocket that fails to connect falls back to long polling', { timeout: TEST_MS }, async () => {
    class FailingWebSocket {
      constructor() {
        this.readyState = 0;
        this.protocol = '';
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        queueMicrotask(() => {
          this.readyState = 3;
          this.onerror?.({ type: 'error' });
          this.onclose?.({ code: 1006, reason: '' });
        });
      }
      send() {
        throw new Error('not open');
      }
      close() {}
    }
    const client = makeClient({ WebSocket: FailingWebSocket });
    const states = [];
    const errors = [];
    client.on('state', (e) => states.push(`${e.state}/${e.transport}`));
    client.on('error', (e) => errors.push(e));
    await withTimeout(client.connect(), WAIT_MS, 'connect()');
    // WebSocket → SSE → long poll → short poll: the next in line is SSE.
    assert.equal(client.transport, 'sse');
    assert.deepEqual(states, ['connecting/websocket', 'connecting/sse', 'connected/sse']);
    assert.equal(errors[0].transport, 'websocket');
    assert.equal(errors[0].error.code, ClientErrorCodes.TransportFailed);

    const channel = freshChannel();
    const sub = client.subscribe(channel);
    await sub.ready(WAIT_MS);
    const got = waitFor(sub, 'publication');
    await fixture.server.publish(channel, { hello: 'longpoll' });
    assert.deepEqual((await got).data, { hello: 'longpoll' });
  });

  test('a WebSocket constructor that throws falls back too, and SSE and long polling failing fall back to polling', { timeout: TEST_MS }, async () => {
    class ThrowingWebSocket {
      constructor() {
        throw new Error('blocked by a proxy');
      }
    }
    const brokenFetch = (input, init) =>
      init?.signal && String(input).endsWith('/cmd') && fetchCalls++ < 2 // the pings that open SSE, then long polling
        ? Promise.reject(new TypeError('fetch failed'))
        : fetch(input, init);
    let fetchCalls = 0;
    const client = makeClient({ WebSocket: ThrowingWebSocket, fetch: brokenFetch });
    const states = [];
    client.on('state', (e) => states.push(`${e.state}/${e.transport}`));
    await withTimeout(client.connect(), WAIT_MS, 'connect()');
    assert.deepEqual(states, ['connecting/websocket', 'connecting/sse', 'connecting/longpoll', 'connecting/poll', 'connected/poll']);
  });
});

describe('switching transports', () => {
  test('a client that switches transport mid-stream receives every offset exactly once, in order', { timeout: TEST_MS }, async () => {
    const client = makeClient({ transport: 'websocket', longPollWait: 5 });
    const channel = freshChannel();
    const received = [];
    const cond = conditions();
    const sub = client.subscribe(channel, (e) => {
      received.push(e.offset);
      cond.poke();
    });
    await withTimeout(client.connect(), WAIT_MS, 'connect()');
    await sub.ready(WAIT_MS);

    const publisher = publishContinuously(fixture.server, channel, () => cond.poke());

    const steps = [
      ['reconnect', 'longpoll'],
      ['reconnect', 'sse'],
      ['reconnect', 'poll'],
      ['live', 'sse'],
      ['live', 'websocket'],
      ['live', 'poll'],
      ['reconnect', 'websocket'],
      ['live', 'longpoll'],
      ['reconnect', 'websocket'],
    ];
    try {
      for (const [how, next] of steps) {
        const target = received.length + 15;
        await cond.until(() => received.length >= target, () => `${target} offsets before switching to ${next} (got ${received.length})`);
        if (how === 'reconnect') {
          client.disconnect();
          const during = publisher.published + 10; // publications made while nobody listens
          await cond.until(() => publisher.published >= during, 'publications while disconnected');
          client.setTransport(next);
          await withTimeout(client.connect(), WAIT_MS, `connect() on ${next}`);
        } else {
          client.setTransport(next);
          await waitConnected(client, next);
        }
        assert.equal(client.transport, next);
      }
      const target = received.length + 15;
      await cond.until(() => received.length >= target, 'offsets after the last switch');
    } finally {
      await publisher.stop();
    }
    await cond.until(() => received.length >= publisher.published, () => `all ${publisher.published} offsets (got ${received.length})`);
    assert.ok(publisher.published > 100, `the publisher ran (${publisher.published})`);
    assert.deepEqual(received, range(1, publisher.published));
    assert.deepEqual(sub.position.offset, publisher.published);
  });

  test('switchTransport() resolves once connected over each transport, and a superseded switch rejects', { timeout: TEST_MS }, async () => {
    const client = makeClient({ longPollWait: 5 });
    const channel = freshChannel();
    const received = [];
    const cond = conditions();
    const sub = client.subscribe(channel, (e) => {
      received.push(e.offset);
      cond.poke();
    });
    await withTimeout(client.connect(), WAIT_MS, 'connect()');
    assert.equal(client.transport, 'websocket');
    await sub.ready(WAIT_MS);

    const publisher = publishContinuously(fixture.server, channel, () => cond.poke());
    try {
      for (const next of ['sse', 'longpoll', 'sse', 'poll', 'websocket', 'sse', 'websocket', 'poll']) {
        const target = received.length + 10;
        await cond.until(() => received.length >= target, () => `${target} offsets before switching to ${next}`);
        await withTimeout(client.switchTransport(next), WAIT_MS, `switchTransport('${next}')`);
        assert.equal(client.transport, next);
        assert.equal(client.state, 'connected');
      }
      // Two switches in a row: the first never gets its attempt and says so; the second lands.
      const first = client.switchTransport('longpoll');
      const second = client.switchTransport('websocket');
      await withTimeout(
        assert.rejects(first, (e) => e.code === ClientErrorCodes.SwitchFailed && /superseded/.test(e.message)),
        WAIT_MS,
        'the superseded switch to reject',
      );
      await withTimeout(second, WAIT_MS, "switchTransport('websocket')");
      assert.equal(client.transport, 'websocket');
      const target = received.length + 10;
      await cond.until(() => received.length >= target, 'offsets after the last switch');
    } finally {
      await publisher.stop();
    }
    await cond.until(() => received.length >= publisher.published, () => `all ${publisher.published} offsets (got ${received.length})`);
    assert.deepEqual(received, range(1, publisher.published));
  });
});

describe('recovery', () => {
  for (const transport of ['websocket', 'poll']) {
    test(`${transport}: recovered:false after the history window lost what was missed`, { timeout: TEST_MS }, async () => {
      const client = makeClient({ transport });
      const channel = freshChannel('tiny'); // HistorySize 3
      const received = [];
      const sub = client.subscribe(channel, (e) => received.push(e.offset));
      const start = await receiveOneThenMissWhileOffline({ client, sub, server: fixture.server, channel, from: 2, to: 10, ms: WAIT_MS });
      const recovery = waitFor(client, 'recovery', (e) => e.channel === channel);
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      const event = await recovery;
      assert.deepEqual(event, { channel, recovered: false, epoch: start.epoch, offset: 10, since: { epoch: start.epoch, offset: 1 } });
      assert.deepEqual(sub.position, { epoch: start.epoch, offset: 10 });

      const next = waitFor(sub, 'publication');
      await fixture.server.publish(channel, { n: 11 });
      assert.equal((await next).offset, 11);
      assert.deepEqual(received, [1, 11]);
    });

    test(`${transport}: recovers what it missed when history still holds it`, { timeout: TEST_MS }, async () => {
      const client = makeClient({ transport });
      const channel = freshChannel();
      const received = [];
      const cond = conditions();
      const sub = client.subscribe(channel, (e) => {
        received.push(e.offset);
        cond.poke();
      });
      client.on('recovery', (e) => assert.fail(`unexpected recovery event ${JSON.stringify(e)}`));
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      await sub.ready(WAIT_MS);
      await fixture.server.publish(channel, { n: 1 });
      await cond.until(() => received.length === 1, 'offset 1');
      client.disconnect();
      for (let i = 2; i <= 30; i++) {
        await fixture.server.publish(channel, { n: i });
      }
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      await cond.until(() => received.length >= 30, () => `30 offsets (got ${received.length})`);
      assert.deepEqual(received, range(1, 30));
    });
  }
});

describe('errors', () => {
  for (const transport of TRANSPORTS) {
    test(`${transport}: an unknown namespace fails the subscription; publishing where clients may not is refused`, { timeout: TEST_MS }, async () => {
      const client = makeClient({ transport, longPollWait: 5 });
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      const good = client.subscribe(freshChannel());
      const bad = client.subscribe('nope:x');
      await assert.rejects(bad.ready(WAIT_MS), (err) => err instanceof HeraldError && err.code === ErrorCodes.InvalidChannel);
      assert.equal(bad.state, 'unsubscribed');
      await good.ready(WAIT_MS); // the other channel is unaffected
      await assert.rejects(client.publish('news', { x: 1 }), (err) => err.code === ErrorCodes.PermissionDenied);
      assert.throws(() => client.subscribe('bad/name'), (err) => err.code === ErrorCodes.InvalidChannel);
      assert.equal(client.state, 'connected');
    });
  }

  test('a token the server cannot validate ends in disconnected with unauthorized, without falling back', { timeout: TEST_MS }, async () => {
    const client = makeClient({ token: 'not-a-jwt' });
    const states = [];
    client.on('state', (e) => states.push(`${e.state}/${e.transport}`));
    await assert.rejects(withTimeout(client.connect(), WAIT_MS, 'connect()'), (err) => err.code === ErrorCodes.Unauthorized);
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(states, ['connecting/websocket', 'disconnected/null']);
  });

  test('publish before connect() is refused with disconnected', async () => {
    const client = makeClient();
    await assert.rejects(client.publish('chat:x', 1), (err) => err.code === ClientErrorCodes.Disconnected);
  });
});
