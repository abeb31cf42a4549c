// The TypeScript client's idempotent publish (`idempotencyKey`) and history paging (`reverse`, `next`) against the
// real Herald server, on every transport.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes } from '../dist/index.js';
import { range, useServer, withTimeout } from '../test-support/server.mjs';

const TEST_MS = 60_000;
const WAIT_MS = 20_000;

const fixture = useServer({}, { pollInterval: 100 });

let channelCounter = 0;
function freshChannel() {
  return `chat:p${process.pid}-${++channelCounter}-${Date.now().toString(36)}`;
}

describe('idempotent publish and history paging', () => {
  for (const transport of ['websocket', 'longpoll', 'poll']) {
    test(`${transport}: a repeated idempotencyKey resolves with the first position and publishes once`, { timeout: TEST_MS }, async () => {
      const client = fixture.makeClient({ transport, longPollWait: 5 });
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      const channel = freshChannel();

      const first = await client.publish(channel, { n: 1 }, { idempotencyKey: 'js-retry-1' });
      const repeats = await Promise.all([1, 2, 3].map(() => client.publish(channel, { n: 'again' }, { idempotencyKey: 'js-retry-1' })));
      const other = await client.publish(channel, { n: 2 }, { idempotencyKey: 'js-retry-2' });

      assert.equal(first.offset, 1);
      for (const repeat of repeats) {
        assert.deepEqual(repeat, first);
      }
      assert.deepEqual(other, { epoch: first.epoch, offset: 2 });
      const history = await client.history(channel, { since: { offset: 0, epoch: first.epoch } });
      assert.deepEqual(history.publications.map((p) => p.data.n), [1, 2]);
      await assert.rejects(client.publish(channel, 1, { idempotencyKey: '' }), (err) => err.code === ErrorCodes.BadRequest);
    });

    test(`${transport}: walks 250 publications in pages of 100 with next, forward and reverse`, { timeout: TEST_MS }, async () => {
      const client = fixture.makeClient({ transport, longPollWait: 5 });
      await withTimeout(client.connect(), WAIT_MS, 'connect()');
      const channel = freshChannel();
      let epoch = '';
      for (let i = 1; i <= 250; i++) {
        epoch = (await fixture.server.publish(channel, { n: i })).epoch;
      }

      async function walk(since, reverse) {
        const pages = [];
        const nexts = [];
        do {
          const page = await client.history(channel, { since, limit: 100, reverse });
          assert.equal(page.offset, 250);
          pages.push(page.publications.map((p) => p.offset));
          assert.ok(page.publications.every((p) => p.data.n === p.offset));
          since = page.next;
          nexts.push(since);
          assert.ok(pages.length <= 3, 'the walk did not end after three pages');
        } while (since !== undefined);
        return { pages, nexts };
      }

      const forward = await walk({ offset: 0, epoch }, false);
      assert.deepEqual(forward.pages, [range(1, 100), range(101, 200), range(201, 250)]);
      assert.deepEqual(forward.nexts, [{ offset: 100, epoch }, { offset: 200, epoch }, undefined]);
      const backward = await walk(undefined, true);
      assert.deepEqual(backward.pages, [range(151, 250).reverse(), range(51, 150).reverse(), range(1, 50).reverse()]);
      assert.deepEqual(backward.nexts, [{ offset: 151, epoch }, { offset: 51, epoch }, undefined]);
    });
  }
});
