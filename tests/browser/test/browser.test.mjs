// End to end: the demo pages served by the real Herald server (the built `herald.dll`), in real headless Chromium
// driven by playwright-core. Two chat pages on different forced transports talk both ways and see each other online
// through server presence; the dashboard shows the traffic.
// Screenshots go to <repo>/artifacts/screenshots/.
//
// Run: `npm ci && node --test` in tests/browser, after building clients/js (npm run build) and then
// `dotnet build Herald.slnx -c Release`. HERALD_DLL overrides the server build; CHROMIUM the browser
// (default /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const testDir = path.resolve(here, '..'); // tests/browser
const repoRoot = path.resolve(testDir, '../..');
const dll = path.resolve(testDir, process.env.HERALD_DLL || '../../src/Herald.Server/bin/Release/net10.0/herald.dll');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshots = path.join(repoRoot, 'artifacts', 'screenshots');

const STARTUP_MS = 60_000;
const STEP_MS = 15_000; // the limit for any single wait in a page

let server;
let serverLog = '';
let baseUrl;
let browser;
const apiKey = 'browser-tests-api-key';

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const tail = (text, lines = 60) => text.split('\n').slice(-lines).join('\n');

async function waitForHealthy(deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  let lastProblem = 'no attempt yet';
  let delay = 50;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`herald exited early (code ${server.exitCode}, signal ${server.signalCode}):\n${tail(serverLog)}`);
    }
    try {
      const res = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return;
      lastProblem = `HTTP ${res.status}`;
    } catch (err) {
      lastProblem = err.cause?.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 500);
  }
  throw new Error(`herald did not become healthy within ${deadlineMs} ms (last: ${lastProblem}):\n${tail(serverLog)}`);
}

before(async () => {
  assert.ok(existsSync(dll), `no server build at ${dll}: run 'dotnet build Herald.slnx -c Release' first`);
  assert.ok(existsSync(executablePath), `no Chromium at ${executablePath}: install it (apt-get install chromium)`);
  baseUrl = `http://127.0.0.1:${await freePort()}`;
  const env = {
    ...process.env,
    Herald__AllowAnonymous: 'true',
    Herald__ApiKey: apiKey,
    Herald__Namespaces__chat__AllowClientPublish: 'true',
    Herald__Namespaces__chat__HistorySize: '1000',
    Herald__Namespaces__chat__Presence: 'true',
    // The board's namespace, as appsettings.Development.json has it.
    Herald__Namespaces__board__AllowClientPublish: 'true',
    Herald__Namespaces__board__HistorySize: '100',
    Herald__Namespaces__board__HistoryTtl: '00:00:10',
    Herald__Namespaces__board__Presence: 'true',
  };
  delete env.ASPNETCORE_URLS; // --urls decides
  server = spawn('dotnet', [dll, '--urls', baseUrl], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (chunk) => { serverLog += chunk; });
  server.stderr.on('data', (chunk) => { serverLog += chunk; });
  server.on('error', (err) => { serverLog += `\n[spawn error] ${err.message}\n`; });
  await waitForHealthy(STARTUP_MS);

  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  mkdirSync(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
});

/** A fresh browser context (its own profile: cookies, storage) with one page; console errors and what it sends are collected. */
async function openPage(url) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  page.errors = [];
  page.sent = []; // request bodies and WebSocket frames the page sent
  page.on('request', (req) => { if (req.postData()) page.sent.push(req.postData()); });
  page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => page.sent.push(String(payload))));
  page.on('pageerror', (err) => page.errors.push(err.message));
  page.on('console', (msg) => { if (msg.type() === 'error') page.errors.push(msg.text()); });
  const res = await page.goto(url, { timeout: STEP_MS });
  assert.equal(res.status(), 200, `GET ${url}`);
  return page;
}

async function join(page, name, room) {
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#join');
  await page.waitForSelector('#chat:not(.hidden)', { timeout: STEP_MS });
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

const messageIn = (page, user, text) =>
  page.locator('#messages li', { hasText: text }).filter({ has: page.locator('.user', { hasText: user }) })
    .waitFor({ timeout: STEP_MS });

const online = (page, name) => page.locator(`#online li[data-name="${name}"]`).waitFor({ timeout: STEP_MS });

test('serves the JS client and the demo pages', async () => {
  for (const [url, type] of [['/', 'text/html'], ['/dashboard.html', 'text/html'], ['/board.html', 'text/html'], ['/js/index.js', 'javascript'],
    ['/vendor/uplot/uPlot.esm.js', 'javascript'], ['/vendor/uplot/uPlot.min.css', 'text/css'], ['/vendor/msgpack/index.mjs', 'javascript']]) {
    const res = await fetch(baseUrl + url);
    assert.equal(res.status, 200, url);
    assert.match(res.headers.get('content-type') ?? '', new RegExp(type), url);
  }
});

test('two chat pages on different transports talk both ways; the dashboard shows the traffic', { timeout: 120_000 }, async () => {
  const room = 'lobby';
  const a = await openPage(`${baseUrl}/?transport=websocket`);
  const b = await openPage(`${baseUrl}/?transport=poll`);
  await join(a, 'alice', room);
  await join(b, 'bob', room);
  await a.locator('#status', { hasText: 'connected (websocket)' }).waitFor({ timeout: STEP_MS });
  await b.locator('#status', { hasText: 'connected (poll)' }).waitFor({ timeout: STEP_MS });

  await send(a, 'hello from websocket');
  await messageIn(b, 'alice', 'hello from websocket');
  await messageIn(a, 'alice', 'hello from websocket');

  await send(b, 'hi back over short polling');
  await messageIn(a, 'bob', 'hi back over short polling');
  await messageIn(b, 'bob', 'hi back over short polling');

  // "Online" comes from server presence (no heartbeat channel): alice's WebSocket subscription and bob's poll lease,
  // each named by the info its client sent.
  for (const page of [a, b]) {
    await online(page, 'alice');
    await online(page, 'bob');
    await page.locator('#presence-note', { hasText: '2 clients online (server presence)' }).waitFor({ timeout: STEP_MS });
  }
  // The old heartbeat channel is gone: nothing either page sent names it.
  assert.ok(b.sent.some((body) => body.includes('"client"')), 'the polling page sends its client id');
  for (const page of [a, b]) {
    assert.deepEqual(page.sent.filter((body) => body.includes('.online')), [], 'no heartbeat channel');
  }

  const dashboard = await openPage(`${baseUrl}/dashboard.html?transport=longpoll`);
  await dashboard.locator('#status', { hasText: 'connected (longpoll)' }).waitFor({ timeout: STEP_MS });
  // A message sent once the dashboard's own subscription has its position reaches it, and it measures its latency.
  await dashboard.evaluate(() => window.dashboard.lobbyReady());
  await send(a, 'latency probe');
  await messageIn(b, 'alice', 'latency probe');
  await dashboard.locator('#page-latency', { hasText: /reach it in \d+ ms/ }).waitFor({ timeout: STEP_MS });
  // The clients chart counts alice's WebSocket (json), bob's short polls and the dashboard's long polls.
  await dashboard.waitForFunction(() => {
    const last = (series) => series[series.length - 1];
    const [, wsJson, , , longPollers, shortPollers] = window.dashboard.charts.connections.data;
    return last(wsJson) === 1 && last(longPollers) >= 1 && last(shortPollers) >= 1;
  }, null, { timeout: STEP_MS });
  await a.screenshot({ path: path.join(screenshots, 'chat-websocket.png') });
  await b.screenshot({ path: path.join(screenshots, 'chat-poll.png') });
  await dashboard.screenshot({ path: path.join(screenshots, 'dashboard.png') });

  for (const [name, page] of [['chat (websocket)', a], ['chat (poll)', b], ['dashboard', dashboard]]) {
    assert.deepEqual(page.errors, [], `${name}: errors in the page`);
  }
});

test("the browser's own EventSource reads /sse: recovery, live pushes, ids naming the position, and resuming from one", { timeout: 60_000 }, async () => {
  const page = await openPage(`${baseUrl}/`);
  const result = await page.evaluate(async () => {
    const channel = `chat:es-${Math.random().toString(36).slice(2)}`;
    const publish = async (n) => {
      const res = await fetch('/cmd', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: n, op: 'publish', channel, data: { n } }) });
      return (await res.json()).result;
    };
    const first = await publish(1);
    const read = (url, count) => new Promise((resolve, reject) => {
      const source = new EventSource(url);
      const events = [];
      const timer = setTimeout(() => { source.close(); reject(new Error(`only ${events.length} events`)); }, 10_000);
      source.onmessage = (e) => {
        events.push({ id: e.lastEventId, data: JSON.parse(e.data) });
        if (events.length === 2) void publish(2).then(() => publish(3));
        if (events.length === count) { clearTimeout(timer); source.close(); resolve(events); }
      };
      source.onerror = () => { clearTimeout(timer); source.close(); reject(new Error('EventSource error')); };
    });
    // connected, subscribed (recovering offset 1 from 0), then the pushes of 2 and 3.
    const live = await read(`/sse?channel=${channel}&offset=0&epoch=${first.epoch}`, 4);
    await publish(4);
    await publish(5);
    // A new stream from the last id the browser kept (its lastEventId) gets exactly 4 and 5 in its recovery.
    const [offset, epoch] = live[3].id.split('.');
    const resumed = await read(`/sse?channel=${channel}&offset=${offset}&epoch=${epoch}`, 2);
    return { epoch: first.epoch, live, resumed };
  });
  assert.ok(result.live[0].data.connected, 'first the connected event');
  assert.deepEqual(result.live[1].data.subscribed.publications.map((p) => p.offset), [1]);
  assert.equal(result.live[1].data.subscribed.recovered, true);
  assert.deepEqual(result.live.slice(2).map((e) => e.data.push.pub.offset), [2, 3]);
  assert.equal(result.live[3].id, `3.${result.epoch}`);
  assert.deepEqual(result.resumed[1].data.subscribed.publications.map((p) => p.offset), [4, 5]);
  assert.deepEqual(page.errors, []);
});

test('a chat page on SSE and one on WebSocket talk both ways', { timeout: 120_000 }, async () => {
  const room = `sse-${Date.now().toString(36)}`;
  const a = await openPage(`${baseUrl}/?transport=sse`);
  const b = await openPage(`${baseUrl}/?transport=websocket`);
  await join(a, 'sara', room);
  await join(b, 'will', room);
  await a.locator('#status', { hasText: 'connected (sse)' }).waitFor({ timeout: STEP_MS });
  await send(a, 'hello over server-sent events');
  await messageIn(b, 'sara', 'hello over server-sent events');
  await messageIn(a, 'sara', 'hello over server-sent events');
  await send(b, 'and back over websocket');
  await messageIn(a, 'will', 'and back over websocket');
  await online(b, 'sara');
  await a.screenshot({ path: path.join(screenshots, 'chat-sse.png') });
  for (const page of [a, b]) {
    assert.deepEqual(page.errors, []);
  }
});

test('the chat page rolls a die by RPC and shows the server refusing an empty or over-long message', { timeout: 120_000 }, async () => {
  for (const transport of ['websocket', 'poll']) {
    const page = await openPage(`${baseUrl}/?transport=${transport}`);
    await join(page, `roller-${transport}`, `dice-${transport}`);
    await send(page, '/roll 20');
    // The server's answer (1..20) is published to the room as a message from this user.
    await page.locator('#messages li', { hasText: /rolled ([1-9]|1\d|20) on a d20/ }).waitFor({ timeout: STEP_MS });

    await send(page, '   ');
    await page.locator('#send-error', { hasText: 'invalid_message: the message is empty' }).waitFor({ timeout: STEP_MS });
    await send(page, 'x'.repeat(501));
    await page.locator('#send-error', { hasText: 'invalid_message: the message is longer than 500 characters' }).waitFor({ timeout: STEP_MS });
    // A refused message is never published: the room holds the roll only, and the next message clears the error.
    await send(page, 'fine');
    await messageIn(page, `roller-${transport}`, 'fine');
    assert.equal(await page.locator('#send-error').textContent(), '');
    assert.equal(await page.locator('#messages li').count(), 2);
    // Over polling the two refusals are HTTP 400 answers of POST /cmd, which the browser logs on its own.
    const unexpected = page.errors.filter((e) => !(transport === 'poll' && /status of 400/.test(e)));
    assert.deepEqual(unexpected, [], `${transport}: errors in the page`);
    assert.equal(page.errors.length - unexpected.length, transport === 'poll' ? 2 : 0, 'one 400 per refused message over polling');
    await page.context().close();
  }
});

/** The WebSocket handshakes of a page as Chromium saw them (DevTools protocol): the server's Sec-WebSocket-Protocol. */
async function handshakes(page) {
  const cdp = await page.context().newCDPSession(page);
  const protocols = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', ({ response }) => {
    const header = Object.entries(response.headers).find(([key]) => key.toLowerCase() === 'sec-websocket-protocol');
    protocols.push(header?.[1] ?? null);
  });
  await cdp.send('Network.enable');
  return protocols;
}

/** Opens the board in a fresh context, recording its WebSocket subprotocol and the frames it sends and receives. */
async function openBoard(board) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err.message));
  page.on('console', (msg) => { if (msg.type() === 'error') page.errors.push(msg.text()); });
  page.protocols = await handshakes(page);
  page.frames = { sent: [], received: [] };
  page.sockets = 0;
  page.on('websocket', (ws) => {
    page.sockets++;
    ws.on('framesent', ({ payload }) => page.frames.sent.push(payload));
    ws.on('framereceived', ({ payload }) => page.frames.received.push(payload));
  });
  const res = await page.goto(`${baseUrl}/board.html?board=${board}`, { timeout: STEP_MS });
  assert.equal(res.status(), 200);
  await page.locator('#status', { hasText: 'connected (websocket, msgpack)' }).waitFor({ timeout: STEP_MS });
  return page;
}

/** This tab's client id on the board, once one of its own publications has come back. */
const myId = (page) => page.waitForFunction(() => window.board.me, null, { timeout: STEP_MS }).then((h) => h.jsonValue());

test('two board tabs see each other move over herald.msgpack in binary frames; a closed tab leaves the board', { timeout: 120_000 }, async () => {
  const board = `t${Date.now().toString(36)}`;
  const a = await openBoard(board);
  const b = await openBoard(board);
  // Both tabs are steered by hand: wandering off, so that only the pointer moves a token.
  for (const page of [a, b]) await page.uncheck('#wander');
  const box = await a.locator('#board').boundingBox();
  await a.mouse.move(box.x + box.width * 0.25, box.y + box.height * 0.75);
  const idA = await myId(a);
  await b.mouse.move(box.x + 10, box.y + 10);
  const idB = await myId(b);
  assert.notEqual(idA, idB);

  // B draws A's token where A's pointer is (x, y in 0..1, as 16-bit fractions of the board).
  const tokenOf = (page, id) => page.evaluate((id) => window.board.tokens.get(id) ?? null, id);
  const near = (page, id, x, y) => page.waitForFunction(([id, x, y]) => {
    const t = window.board.tokens.get(id);
    return t && Math.abs(t.x - x) < 0.02 && Math.abs(t.y - y) < 0.02;
  }, [id, x, y], { timeout: STEP_MS });
  await near(b, idA, 0.25, 0.75);
  // Then follows it: a sweep across the board arrives on B as it goes, ending where the pointer stops.
  const moves = 20;
  for (let i = 1; i <= moves; i++) {
    await a.mouse.move(box.x + box.width * (0.25 + 0.5 * i / moves), box.y + box.height * (0.75 - 0.5 * i / moves));
  }
  await near(b, idA, 0.75, 0.25);
  await near(a, idB, 10 / box.width, 10 / box.height);

  // Over herald.msgpack, as the server answered the handshake, and in binary frames both ways.
  for (const page of [a, b]) {
    assert.deepEqual(page.protocols, ['herald.msgpack'], `${page.sockets} sockets`);
    assert.ok(page.frames.sent.length > 5 && page.frames.received.length > 5, 'frames went both ways');
    assert.ok(page.frames.sent.every(Buffer.isBuffer), 'every frame the page sent is binary');
    assert.ok(page.frames.received.every(Buffer.isBuffer), 'every frame the page received is binary');
  }
  // A position is 4 bytes: the publish that carries it is a small MessagePack map (a client may batch several in a frame).
  const publishes = a.frames.sent.filter((f) => f.includes('publish'));
  assert.ok(publishes.length > 5);
  for (const frame of publishes) {
    const perPublish = frame.length / (frame.toString('latin1').split('publish').length - 1);
    assert.ok(perPublish < 64, `a publish takes ${perPublish} bytes`);
  }
  await b.screenshot({ path: path.join(screenshots, 'board.png') });
  assert.ok(await tokenOf(b, idA));

  // A closes its tab: its token leaves B's board (through presence), and B's count drops to itself.
  await a.context().close();
  await b.waitForFunction((id) => !window.board.tokens.has(id), idA, { timeout: STEP_MS });
  await b.locator('#tab-count', { hasText: /^1$/ }).waitFor({ timeout: STEP_MS });
  assert.ok(await tokenOf(b, idB), 'B keeps its own token');
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await b.context().close();
});

test('the server refuses a board publication that is not a 4-byte position', async () => {
  const publish = (body) => fetch(`${baseUrl}/cmd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await publish({ id: 1, op: 'publish', channel: 'board:refuse', data: { x: 1, y: 2 } });
  assert.equal(json.status, 400);
  assert.equal((await json.json()).error.code, 'invalid_message');
  const five = await publish({ id: 2, op: 'publish', channel: 'board:refuse', b64: 'AQIDBAU=' });
  assert.equal((await five.json()).error.code, 'invalid_message');
  const four = await publish({ id: 3, op: 'publish', channel: 'board:refuse', b64: 'AQIDBA==' });
  assert.equal(four.status, 200);
  assert.equal((await four.json()).result.offset, 1);
});

test('the dashboard draws its charts with uPlot, and the messages chart rises when publications are made', { timeout: 120_000 }, async () => {
  const page = await openPage(`${baseUrl}/dashboard.html`);
  // Four charts, each a uPlot canvas with a legend naming its series.
  await page.waitForFunction(() => document.querySelectorAll('.chart .uplot canvas').length === 4, null, { timeout: STEP_MS });
  for (const [chart, label] of [['messages', 'deliveries'], ['latency', 'p99'], ['connections', 'WebSocket msgpack'], ['bytes', 'SSE (json)']]) {
    await page.locator(`[data-chart="${chart}"] .u-legend`, { hasText: label }).waitFor({ timeout: STEP_MS });
  }
  // Nothing published for a while: wait for a scrape whose publication rate is 0 (or the start of the series).
  await page.waitForFunction(() => {
    const pubs = window.dashboard.charts.messages.data[1];
    return pubs.length >= 2 && pubs[pubs.length - 1] === 0;
  }, null, { timeout: STEP_MS });
  const before = await page.evaluate(() => window.dashboard.charts.messages.data[0].length);

  // Publications through the server API (it is not rate-limited) to a channel the dashboard does not read, with a
  // WebSocket subscriber so that there are deliveries too.
  const board = `d${Date.now().toString(36)}`;
  const watcher = await openBoard(board);
  await watcher.uncheck('#wander');
  let stop = false;
  const publishing = (async () => {
    while (!stop) {
      const res = await fetch(`${baseUrl}/api/publish?channel=board:${board}`, {
        method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array([1, 2, 3, 4]),
      });
      assert.equal(res.status, 200);
      await new Promise((resolve) => setTimeout(resolve, 20)); // pacing the load, not waiting for an outcome
    }
  })();
  try {
    await page.waitForFunction((before) => {
      const [times, pubs, deliveries] = window.dashboard.charts.messages.data;
      return times.length > before && pubs[pubs.length - 1] > 5 && deliveries[deliveries.length - 1] > 5;
    }, before, { timeout: STEP_MS });
    await page.locator('#now-messages', { hasText: /^[1-9]\d*(\.\d)? · [1-9]/ }).waitFor({ timeout: STEP_MS });
    // The msgpack board's WebSocket shows in the clients chart and its pushes in the bytes chart.
    await page.waitForFunction(() => {
      const last = (series) => series[series.length - 1];
      return last(window.dashboard.charts.connections.data[2]) >= 1 && last(window.dashboard.charts.bytes.data[2]) > 0;
    }, null, { timeout: STEP_MS });
    await page.waitForFunction(() => window.dashboard.charts.latency.data[2].some((v) => v !== null), null, { timeout: STEP_MS });
  } finally {
    stop = true;
    await publishing;
  }
  await page.screenshot({ path: path.join(screenshots, 'dashboard.png') });
  assert.deepEqual(page.errors, [], 'errors in the dashboard');
  await watcher.context().close();
  await page.context().close();
});
