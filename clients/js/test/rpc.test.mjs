// RPC and the publish filter through the application handler, against the real Herald server: the standalone server's
// demo chat handler answers `roll` and refuses empty or over-long chat messages. Every transport the client has.
//
// Run: `npm test` in clients/js after `dotnet build src/Herald.Server -c Release` (HERALD_DLL overrides the build).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeraldError } from '../dist/index.js';
import { useServer, waitConnected } from '../test-support/server.mjs';

const TEST_MS = 60_000;
const fixture = useServer();

for (const transport of ['websocket', 'longpoll', 'poll']) {
  test(`${transport}: rpc answers with the handler's data, and its errors reject with their code`, { timeout: TEST_MS }, async () => {
    const client = fixture.makeClient({ transport });
    client.connect();
    await waitConnected(client, transport);

    const rolled = await client.rpc('roll', { sides: 20 });
    assert.equal(rolled.sides, 20);
    assert.ok(Number.isInteger(rolled.value) && rolled.value >= 1 && rolled.value <= 20, `a d20 roll: ${rolled.value}`);
    assert.equal((await client.rpc('roll')).sides, 6); // no data: the default die

    await assert.rejects(client.rpc('roll', { sides: 1 }), (err) => err instanceof HeraldError && err.code === 'bad_request' && /sides/.test(err.message));
    await assert.rejects(client.rpc('no-such-method'), (err) => err instanceof HeraldError && err.code === 'not_available');
    await assert.rejects(client.rpc('bad name'), (err) => err instanceof HeraldError && err.code === 'bad_request' && /'method'/.test(err.message));
  });

  test(`${transport}: the chat handler refuses an empty or over-long message with its code, and lets others through`, { timeout: TEST_MS }, async () => {
    const client = fixture.makeClient({ transport });
    client.connect();
    await waitConnected(client, transport);
    const channel = `chat:rpc-${transport}-${Date.now()}`;

    await assert.rejects(client.publish(channel, { text: '  ' }), (err) => err.code === 'invalid_message' && /empty/.test(err.message));
    await assert.rejects(client.publish(channel, { text: 'x'.repeat(501) }), (err) => err.code === 'invalid_message' && /500/.test(err.message));
    assert.equal((await client.publish(channel, { text: 'hello' })).offset, 1);
    assert.equal((await client.publish(channel, { n: 2 })).offset, 2); // not a chat message: not filtered
    assert.equal((await client.history(channel)).publications.length, 2);
  });
}
