// Regression (found by the demo board, issue 13 item 5): a subscribe reply and the pushes that follow it in the same
// WebSocket frame. The client handled the reply in a promise continuation, after the rest of the frame, so those pushes
// arrived before the channel had its position and were dropped; the next push then looked like a gap, and the client
// reconnected to resynchronise. Under a steady stream of publications the server coalesces the reply with the pushes
// queued behind it, so subscribing while publishing reproduces it on most attempts; with the fix no attempt may gap.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conditions, publishContinuously, useServer } from '../test-support/server.mjs';

const fixture = useServer();

for (const protocol of ['json', 'msgpack']) {
  test(`subscribing over herald.${protocol} while a channel is busy delivers every offset after the reply, without a reconnect`, { timeout: 60_000 }, async () => {
    const channel = `chat:seam-${protocol}-${Date.now().toString(36)}`;
    const waits = conditions();
    const publisher = publishContinuously(fixture.server, channel, () => waits.poke());
    try {
      await waits.until(() => publisher.published >= 20, 'the stream to be under way');
      for (let attempt = 0; attempt < 10; attempt++) {
        const client = fixture.makeClient({ transport: 'websocket', protocol });
        const problems = [];
        client.on('error', ({ error }) => problems.push(error.code));
        const offsets = [];
        const sub = client.subscribe(channel, (pub) => { offsets.push(pub.offset); waits.poke(); });
        await client.connect();
        const { offset: start } = await sub.ready();
        await waits.until(() => offsets.length >= 10, `attempt ${attempt}: ten pushes after the reply`);
        assert.deepEqual(problems, [], `attempt ${attempt}: no gap, no reconnect`);
        assert.deepEqual(offsets.slice(0, 10), Array.from({ length: 10 }, (_, i) => start + 1 + i), `attempt ${attempt}: contiguous from the reply`);
        client.disconnect();
      }
    } finally {
      await publisher.stop();
    }
  });
}
