// Latest-value channels (Herald:Namespaces:<ns>:Conflate) seen from the TypeScript client, against the real server: a
// client that comes back behind gets the newest publication and a `skipped` event for the offsets in between (not a
// `recovery` loss, not a gap), on every transport, and its cursor lands on the newest offset.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { receiveOneThenMissWhileOffline, useServer, waitFor, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 60_000;
const WAIT_MS = 20_000;

const fixture = useServer({ Herald__Namespaces__latest__HistorySize: '10', Herald__Namespaces__latest__Conflate: 'true' }, { pollInterval: 100 });

let channelCounter = 0;
function freshChannel() {
  return `latest:t${process.pid}-${++channelCounter}-${Date.now().toString(36)}`;
}

describe('conflated channels', () => {
  for (const transport of ['websocket', 'sse', 'longpoll', 'poll']) {
    test(`${transport}: coming back behind, gets the newest and a skipped event, and its cursor lands on the newest`, { timeout: TEST_MS }, async () => {
      const client = fixture.makeClient({ transport, longPollWait: 5 });
      const channel = freshChannel();
      const seen = [];
      const sub = client.subscribe(channel, (e) => seen.push(`pub ${e.offset}`));
      sub.on('skipped', (e) => seen.push(`skipped ${e.from}-${e.to}`));
      client.on('recovery', (e) => assert.fail(`unexpected recovery event ${JSON.stringify(e)}`));
      client.on('error', (e) => assert.fail(`unexpected error ${e.error.code}: ${e.error.message}`));
      const start = await receiveOneThenMissWhileOffline({ client, sub, server: fixture.server, channel, from: 2, to: 40, ms: WAIT_MS });
      const skipped = waitFor(client, 'skipped', (e) => e.channel === channel);
      const newest = waitFor(sub, 'publication', (e) => e.offset === 40);
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      assert.deepEqual(await skipped, { channel, epoch: start.epoch, from: 2, to: 39 });
      assert.equal((await newest).data.n, 40);
      assert.deepEqual(sub.position, { epoch: start.epoch, offset: 40 });

      const next = waitFor(sub, 'publication');
      await fixture.server.publish(channel, { n: 41 });
      assert.equal((await next).offset, 41);
      assert.deepEqual(seen, ['pub 1', 'skipped 2-39', 'pub 40', 'pub 41']);
    });
  }
});
