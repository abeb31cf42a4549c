// Wire-level smoke test of the benchmark peers and floors (see README.md for the protocols it checks).
//
//   node smoke.mjs [--signalr PORT] [--socketio PORT] [--nchan PORT] [--kestrel PORT] [--kestrel-raw PORT] [--kestrel-socket PORT] [--host 127.0.0.1]
//
// For each peer given: two subscribers on one channel (each way of subscribing that the README documents), exact
// handshake frames, then three publications over HTTP; every subscriber must receive all three, in order, once, in
// exactly the documented frame format. Nchan adds a long-poll subscriber that follows the stream with
// If-Modified-Since/If-None-Match. Exits 0 when every check passed, 1 otherwise.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

const RS = '\x1e'; // SignalR JSON record separator
const STEP_TIMEOUT_MS = 10_000;

const opts = { host: '127.0.0.1' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!['signalr', 'socketio', 'nchan', 'kestrel', 'kestrel-raw', 'kestrel-socket', 'host'].includes(key) || argv[i + 1] === undefined) {
    console.error('usage: node smoke.mjs [--signalr PORT] [--socketio PORT] [--nchan PORT] [--kestrel PORT] [--kestrel-raw PORT] [--kestrel-socket PORT] [--host HOST]');
    process.exit(2);
  }
  opts[key] = argv[i + 1];
}

let passed = 0;
let failed = 0;
const check = (name, ok, detail = '') => {
  if (ok) {
    passed++;
    console.log(`  ok   ${name}`);
  } else {
    failed++;
    console.log(`  FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
  return ok;
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (s) => JSON.stringify(s);

async function waitFor(pred, what, ms = STEP_TIMEOUT_MS) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(20);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** A WebSocket that records every frame; `frames` holds { text, binary }. */
function openSocket(url) {
  return new Promise((resolve, reject) => {
    // perMessageDeflate off: the C# load generator's ClientWebSocket offers no compression either.
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.frames = [];
    ws.closed = null;
    ws.on('message', (data, isBinary) => ws.frames.push({ text: data.toString('utf8'), binary: isBinary }));
    ws.on('close', (code, reason) => { ws.closed = { code, reason: reason.toString() }; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Takes the next frame (waiting for it); removes it from ws.frames. */
async function nextFrame(ws, what) {
  await waitFor(() => ws.frames.length > 0 || ws.closed, what);
  if (ws.frames.length === 0) throw new Error(`socket closed (${show(ws.closed)}) while waiting for ${what}`);
  return ws.frames.shift();
}

async function post(url, body, contentType = 'text/plain; charset=utf-8') {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': contentType }, body });
  await res.arrayBuffer();
  return res.status;
}

/**
 * The common part: subscribers expose `received` (payloads in arrival order, already decoded from the wire format, or
 * an Error for a frame that matched no documented form). Publishes probes until every subscriber has seen one (the
 * subscribe calls are fire-and-forget on some peers), then three real payloads, and checks order and exactly-once.
 */
async function fanOutChecks(peer, subscribers, publishUrl, okStatuses) {
  // A URL takes the payload as the body; a function publishes it its own way (Herald's JSON publish API).
  const publish = typeof publishUrl === 'function' ? publishUrl : (p) => post(publishUrl, p);
  const probeTag = `probe-${Math.random().toString(36).slice(2)}`;
  let probes = 0;
  const end = Date.now() + STEP_TIMEOUT_MS;
  while (!subscribers.every((s) => s.received.some((p) => typeof p === 'string' && p.startsWith(probeTag)))) {
    if (Date.now() > end) throw new Error('no probe publication reached every subscriber within 10 s');
    const status = await publish(`${probeTag}-${probes++}`);
    if (!okStatuses.includes(status)) throw new Error(`probe publish returned ${status}`);
    await sleep(100);
  }
  check(`${peer}: all ${subscribers.length} subscribers are subscribed (after ${probes} probe publication(s))`, true);

  // Small JSON like the benchmark's, with characters that need escaping in JSON and a non-ASCII one.
  const payloads = [1, 2, 3].map((i) => `{"t":${Date.now()},"s":${i},"p":"x\\"y/é✓"}`);
  for (const [i, p] of payloads.entries()) {
    const status = await publish(p);
    check(`${peer}: publish #${i + 1} answered ${status}`, okStatuses.includes(status), `expected ${okStatuses.join(' or ')}`);
  }

  for (const s of subscribers) {
    const real = () => s.received.filter((p) => !(typeof p === 'string' && p.startsWith(probeTag)));
    try {
      await waitFor(() => real().length >= payloads.length, `${s.name} to receive ${payloads.length} publications`, 5000);
    } catch (e) {
      check(`${peer}: ${s.name} received the publications`, false, `${e.message}; got ${show(real())}`);
      continue;
    }
    await sleep(200); // anything extra (a duplicate) would arrive now
    const errors = s.received.filter((p) => p instanceof Error);
    check(`${peer}: ${s.name} frames all in the documented format`, errors.length === 0, errors.map((e) => e.message).join('; '));
    const got = real();
    check(`${peer}: ${s.name} received all 3 publications once, in order, byte-exact`,
      got.length === payloads.length && got.every((p, i) => p === payloads[i]), `got ${show(got)}`);
    const firstReal = s.received.findIndex((p) => typeof p === 'string' && !p.startsWith(probeTag));
    const lateProbe = s.received.slice(firstReal).some((p) => typeof p === 'string' && p.startsWith(probeTag));
    check(`${peer}: ${s.name} got no probe after the first real publication (ordering)`, !lateProbe);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// ASP.NET Core SignalR, JSON hub protocol over a WebSocket straight at /hub (no negotiate)

async function signalr(port) {
  const base = `http://${opts.host}:${port}`;
  const channel = `smoke-signalr-${Date.now()}`;
  const subs = [];
  for (const [name, withId] of [['sub A (Subscribe without invocationId)', false], ['sub B (Subscribe with invocationId)', true]]) {
    const ws = await openSocket(`ws://${opts.host}:${port}/hub`);
    ws.send(`{"protocol":"json","version":1}${RS}`);
    const hs = await nextFrame(ws, 'handshake response');
    check(`signalr: ${name}: handshake response is exactly {}\\x1e`, hs.text === `{}${RS}` && !hs.binary, show(hs.text));
    if (withId) {
      ws.send(`{"type":1,"invocationId":"1","target":"Subscribe","arguments":[${show(channel)}]}${RS}`);
      const done = await nextFrame(ws, 'completion');
      const expected = `{"type":3,"invocationId":"1","result":null}${RS}`;
      check(`signalr: ${name}: completion is exactly ${show(expected)}`, done.text === expected, show(done.text));
    } else {
      ws.send(`{"type":1,"target":"Subscribe","arguments":[${show(channel)}]}${RS}`);
    }
    const sub = { name, ws, received: [] };
    // One frame can carry several records; each ends with \x1e. Pings ({"type":6}) are skipped.
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      if (!text.endsWith(RS)) {
        sub.received.push(new Error(`frame does not end with \\x1e: ${show(text)}`));
        return;
      }
      for (const record of text.slice(0, -1).split(RS)) {
        if (record === '{"type":6}') continue;
        const m = /^\{"type":1,"target":"m","arguments":\[(".*")\]\}$/.exec(record);
        sub.received.push(m ? JSON.parse(m[1]) : new Error(`unexpected record ${show(record)}`));
      }
    });
    subs.push(sub);
  }
  try {
    await fanOutChecks('signalr', subs, `${base}/publish/${encodeURIComponent(channel)}`, [204]);
  } finally {
    for (const s of subs) s.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Socket.IO 4 = Engine.IO v4 over a WebSocket only (no polling first)

async function socketio(port) {
  const base = `http://${opts.host}:${port}`;
  const channel = `smoke-socketio-${Date.now()}`;
  const subs = [];
  for (const [name, query] of [['sub A (emit subscribe)', ''], ['sub B (?channel= in the handshake)', `&channel=${encodeURIComponent(channel)}`]]) {
    const ws = await openSocket(`ws://${opts.host}:${port}/socket.io/?EIO=4&transport=websocket${query}`);
    const open = await nextFrame(ws, 'engine.io open packet');
    let info = null;
    try { info = open.text.startsWith('0') ? JSON.parse(open.text.slice(1)) : null; } catch { info = null; }
    check(`socketio: ${name}: open packet 0{"sid",...,"pingInterval":25000,"pingTimeout":20000}`,
      info !== null && typeof info.sid === 'string' && info.pingInterval === 25000 && info.pingTimeout === 20000
        && Array.isArray(info.upgrades) && info.upgrades.length === 0, show(open.text));
    ws.send('40');
    const connect = await nextFrame(ws, 'socket.io CONNECT reply');
    check(`socketio: ${name}: namespace connect reply is 40{"sid":"..."}`, /^40\{"sid":"[^"]+"\}$/.test(connect.text), show(connect.text));
    if (!query) ws.send(`42${show(['subscribe', channel])}`);
    const sub = { name, ws, received: [] };
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      if (text === '2') { ws.send('3'); return; } // Engine.IO ping -> pong
      const prefix = `42["m",`;
      if (text.startsWith(prefix) && text.endsWith(']')) {
        try {
          const arr = JSON.parse(text.slice(2));
          if (arr.length === 2 && typeof arr[1] === 'string') { sub.received.push(arr[1]); return; }
        } catch { /* falls through */ }
      }
      sub.received.push(new Error(`unexpected frame ${show(text)}`));
    });
    subs.push(sub);
  }
  try {
    await fanOutChecks('socketio', subs, `${base}/publish/${encodeURIComponent(channel)}`, [204]);
  } finally {
    for (const s of subs) s.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Nchan: WebSocket subscribers (one raw payload per text frame) and one long-poll subscriber

function longPoller(url, name) {
  const sub = { name, received: [], stopped: false, controller: new AbortController(), headersSeen: [] };
  sub.done = (async () => {
    let lastModified = null;
    let etag = null;
    while (!sub.stopped) {
      const headers = {};
      if (lastModified !== null) headers['If-Modified-Since'] = lastModified;
      if (etag !== null) headers['If-None-Match'] = etag;
      let res;
      try {
        res = await fetch(url, { headers, signal: sub.controller.signal });
      } catch (e) {
        if (!sub.stopped) sub.received.push(new Error(`long-poll request failed: ${e.message}`));
        return;
      }
      const body = await res.text();
      if (res.status !== 200) {
        sub.received.push(new Error(`long-poll answered ${res.status}`));
        return;
      }
      lastModified = res.headers.get('last-modified');
      etag = res.headers.get('etag');
      if (lastModified === null || etag === null) {
        sub.received.push(new Error('long-poll 200 without Last-Modified/Etag'));
        return;
      }
      sub.headersSeen.push({ lastModified, etag });
      sub.received.push(body);
    }
  })();
  return sub;
}

async function nchan(port) {
  const base = `http://${opts.host}:${port}`;
  const channel = `smoke-nchan-${Date.now()}`;
  const subUrl = `ws://${opts.host}:${port}/sub/${encodeURIComponent(channel)}`;
  const subs = [];
  for (const name of ['ws sub A', 'ws sub B']) {
    const ws = await openSocket(subUrl);
    const sub = { name, ws, received: [] };
    ws.on('message', (data, isBinary) => {
      sub.received.push(isBinary ? new Error('binary frame for a text/plain publication') : data.toString('utf8'));
    });
    subs.push(sub);
  }
  const poller = longPoller(`${base}/sub/${encodeURIComponent(channel)}`, 'long-poll sub');
  subs.push(poller);
  try {
    // Nchan answers 201 when the channel had subscribers at that moment and 202 when it had none (message only queued).
    await fanOutChecks('nchan', subs, `${base}/pub/${encodeURIComponent(channel)}`, [201, 202]);
    const tags = poller.headersSeen.map((h) => Number(h.etag));
    check('nchan: long-poll Etag counts up within one Last-Modified second, or Last-Modified moves on',
      poller.headersSeen.every((h, i) => i === 0 || Date.parse(h.lastModified) > Date.parse(poller.headersSeen[i - 1].lastModified)
        || tags[i] > tags[i - 1]), show(poller.headersSeen));

    // A subscriber must not send data frames: Nchan closes a subscriber-only WebSocket that does with 1008.
    const ws = subs[0].ws;
    ws.send('hello');
    await waitFor(() => ws.closed, 'nchan to close a subscriber that sent a frame', 3000).catch(() => {});
    check('nchan: a WebSocket subscriber that sends a frame is closed with 1008', ws.closed !== null && ws.closed.code === 1008, show(ws.closed));
  } finally {
    poller.stopped = true;
    poller.controller.abort();
    for (const s of subs) if (s.ws) s.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The floors (kestrel, kestrel-raw, kestrel-socket): Herald's herald.json at /ws (connect, subscribe, pushes), POST /api/publish

async function floor(peer, port) {
  const base = `http://${opts.host}:${port}`;
  const channel = `smoke-${peer}-${Date.now()}`;
  const subs = [];
  for (const name of ['sub A', 'sub B']) {
    const ws = await openSocket(`ws://${opts.host}:${port}/ws`);
    ws.send(`{"id":1,"op":"connect"}\n{"id":2,"op":"subscribe","channel":${show(channel)}}`);
    const reply = await nextFrame(ws, 'connect and subscribe results');
    const expected = '{"id":1,"result":{}}\n{"id":2,"result":{"epoch":"floor","offset":0}}';
    check(`${peer}: ${name}: results are exactly ${show(expected)}`, reply.text === expected && !reply.binary, show(reply.text));
    const sub = { name, ws, received: [], offsets: [], errors: [] };
    // One push per frame, as Herald encodes it; the offsets must count up by one.
    ws.on('message', (data, isBinary) => {
      const text = data.toString('utf8');
      if (/^\{"id":\d+,"error":/.test(text)) {
        sub.errors.push(text);
        return;
      }
      const m = /^\{"push":\{"channel":"([^"]*)","pub":\{"offset":(\d+),"data":(.*)\}\}\}$/.exec(text);
      if (isBinary || !m || m[1] !== channel) {
        sub.received.push(new Error(`unexpected frame ${show(text)}`));
        return;
      }
      const offset = Number(m[2]);
      if (sub.offsets.length > 0 && offset !== sub.offsets[sub.offsets.length - 1] + 1) {
        sub.received.push(new Error(`offset ${offset} after ${sub.offsets[sub.offsets.length - 1]}`));
      }
      sub.offsets.push(offset);
      sub.received.push(JSON.parse(m[3]));
    });
    subs.push(sub);
  }
  try {
    const publish = (payload) => post(`${base}/api/publish`, JSON.stringify({ channel, data: payload }), 'application/json');
    await fanOutChecks(peer, subs, publish, [200]);
    const last = subs[0].offsets[subs[0].offsets.length - 1];
    const res = await fetch(`${base}/api/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ channel, data: 'last' }) });
    const answer = await res.text();
    check(`${peer}: the publish API answers {"epoch":"floor","offset":N+1}`, res.status === 200 && answer === `{"epoch":"floor","offset":${last + 1}}`, `${res.status} ${answer}`);

    // Nothing but connect and subscribe: anything else is answered with an error, and the connection stays.
    const ws = subs[1].ws;
    ws.send('{"id":3,"op":"presence","channel":"x"}');
    await waitFor(() => subs[1].errors.length > 0, 'the error reply');
    check(`${peer}: an unknown command is answered with an error`, /^\{"id":3,"error":\{"code":"bad_request"/.test(subs[1].errors[0]), subs[1].errors[0]);
    // A client's close frame is answered with one, echoing its code.
    ws.close(4000, 'bye');
    await waitFor(() => ws.closed, 'the close handshake', 3000).catch(() => {});
    check(`${peer}: a client's close is answered with its code`, ws.closed !== null && ws.closed.code === 4000, show(ws.closed));
  } finally {
    for (const s of subs) s.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------------------

const peers = [['signalr', signalr], ['socketio', socketio], ['nchan', nchan],
  ['kestrel', (port) => floor('kestrel', port)], ['kestrel-raw', (port) => floor('kestrel-raw', port)],
  ['kestrel-socket', (port) => floor('kestrel-socket', port)]].filter(([k]) => opts[k]);
if (peers.length === 0) {
  console.error('usage: node smoke.mjs [--signalr PORT] [--socketio PORT] [--nchan PORT] [--kestrel PORT] [--kestrel-raw PORT] [--kestrel-socket PORT] [--host HOST]');
  process.exit(2);
}
for (const [name, run] of peers) {
  console.log(`${name} (port ${opts[name]})`);
  try {
    await run(opts[name]);
  } catch (e) {
    check(`${name}: ran to the end`, false, e.message);
  }
}
console.log(`smoke: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
