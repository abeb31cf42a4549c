// Binary publications and the herald.msgpack protocol through the TypeScript client, against the real server: bytes
// round trip unchanged (all 256 byte values, empty) beside JSON, live and in history, on the WebSocket over both
// protocols and on both polling transports; a msgpack and a json client on one channel see the same publications.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { conditions, useServer, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 60_000;
const WAIT_MS = 20_000;

const fixture = useServer({}, { pollInterval: 100 });
const makeClient = fixture.makeClient;

let counter = 0;
const freshChannel = () => `chat:bin${process.pid}-${++counter}-${Date.now().toString(36)}`;
const all = Uint8Array.from({ length: 256 }, (_, i) => i);

async function publishBytesViaApi(channel, bytes) {
  const res = await fetch(`${fixture.server.url}/api/publish?channel=${encodeURIComponent(channel)}`, {
    method: 'POST',
    headers: { authorization: 'Bearer k', 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  assert.equal(res.status, 200, await res.text());
}

function collect(client, channel) {
  const received = [];
  const cond = conditions();
  const sub = client.subscribe(channel, (e) => {
    received.push(e);
    cond.poke();
  });
  return { sub, received, cond };
}

function assertPublications(pubs) {
  assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3, 4]);
  assert.equal(pubs[0].binary, true);
  assert.equal(pubs[0].data, undefined);
  assert.deepEqual([...pubs[0].bytes], [...all]);
  assert.equal(pubs[1].binary, true);
  assert.equal(pubs[1].bytes.length, 0);
  assert.equal(pubs[2].binary, false);
  assert.deepEqual(pubs[2].data, { n: 3, text: 'hé' });
  assert.equal(new TextDecoder().decode(pubs[2].bytes), '{"n":3,"text":"hé"}');
  assert.deepEqual([...pubs[3].bytes], [...all].reverse());
}

describe('binary publications', () => {
  const cases = [
    ['websocket', 'json'],
    ['websocket', 'msgpack'],
    ['longpoll', 'json'],
    ['poll', 'msgpack'], // polling speaks JSON whatever the option says
  ];
  for (const [transport, protocol] of cases) {
    test(`${transport}/${protocol}: bytes and JSON round trip unchanged, live and in history`, { timeout: TEST_MS }, async () => {
      const client = makeClient({ transport, protocol, longPollWait: 5 });
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      const channel = freshChannel();
      const { sub, received, cond } = collect(client, channel);
      await sub.ready(WAIT_MS);

      assert.equal((await client.publish(channel, all)).offset, 1);
      await client.publish(channel, new Uint8Array(0));
      await client.publish(channel, { n: 3, text: 'hé' });
      await publishBytesViaApi(channel, all.slice().reverse());

      await cond.until(() => received.length >= 4, () => `4 publications (got ${received.length})`);
      assertPublications(received);
      assert.equal(typeof received[0].info.client, 'string', 'bytes carry the publisher info');

      const history = await client.history(channel);
      assertPublications(history.publications);
    });
  }

  test('a msgpack and a json client on one channel see the same publications', { timeout: TEST_MS }, async () => {
    const packed = makeClient({ transport: 'websocket', protocol: 'msgpack' });
    const json = makeClient({ transport: 'websocket' });
    await withTimeout(Promise.all([packed.connect(), json.connect()]), WAIT_MS, 'connect()');
    const channel = freshChannel();
    const a = collect(packed, channel);
    const b = collect(json, channel);
    await a.sub.ready(WAIT_MS);
    await b.sub.ready(WAIT_MS);

    await packed.publish(channel, Uint8Array.of(0xca, 0xfe));
    await json.publish(channel, Uint8Array.of(0xbe, 0xef));
    await packed.publish(channel, { list: [1, 2.5, null, true] });
    for (const side of [a, b]) {
      await side.cond.until(() => side.received.length >= 3, () => `3 publications (got ${side.received.length})`);
      assert.deepEqual([...side.received[0].bytes], [0xca, 0xfe]);
      assert.deepEqual([...side.received[1].bytes], [0xbe, 0xef]);
      assert.deepEqual(side.received[2].data, { list: [1, 2.5, null, true] });
    }
  });
});
