// A stand-in for an application's backend behind Herald's hook proxy (docs/protocol.md, "HTTP proxy of hooks"), for
// the tests: a real process on a free loopback port. It prints "listening <port>" once ready and exits when its stdin
// closes, so it never outlives the test run that started it. No dependencies beyond Node's own http module.
//
//   POST /connect    token "refuse" → error; "as-bob" → bob with grants, info, expire_at; "echo" → the request (body
//                    and headers) as info; anything else → {} (the token decides)
//   POST /subscribe  channel "chat:members" → error; "chat:welcome" → data; "chat:echo" → the request as data; else {}
//   POST /publish    channel "chat:upper" → data with text upper-cased; "chat:echo" → the request as data;
//                    data.text "" → error; else {}
//   POST /rpc        method "echo" → the request as data; "pay" → error; "nothing" → {}; else not_available
//   POST /slow       never answers
//   POST /status/N   answers HTTP N with an empty JSON object
//   POST /canned/X   answers one of the malformed bodies below, with HTTP 200
import http from 'node:http';

const canned = {
  'not-json': ['text/plain', 'this is not JSON'],
  'array': ['application/json', '[]'],
  'empty-object': ['application/json', '{}'],
  'result-not-object': ['application/json', '{"result":5}'],
  'result-null': ['application/json', '{"result":null}'],
  'both': ['application/json', '{"result":{},"error":{"code":"x","message":"y"}}'],
  'error-bad-code': ['application/json', '{"error":{"code":"has spaces","message":"m"}}'],
  'error-no-message': ['application/json', '{"error":{"code":"nope"}}'],
  'error-long-message': ['application/json', JSON.stringify({ error: { code: 'nope', message: 'x'.repeat(1025) } })],
  'error-not-object': ['application/json', '{"error":"nope"}'],
  'connect-bad-right': ['application/json', '{"result":{"user":"x","channels":{"chat:*":["fly"]}}}'],
  'connect-info-not-object': ['application/json', '{"result":{"user":"x","info":[1]}}'],
  'connect-user-not-string': ['application/json', '{"result":{"user":5}}'],
  'connect-grants-without-user': ['application/json', '{"result":{"channels":{"chat:*":["subscribe"]}}}'],
  'connect-expire-string': ['application/json', '{"result":{"user":"x","expire_at":"soon"}}'],
  'huge': ['application/json', JSON.stringify({ result: { data: 'x'.repeat(2 * 1024 * 1024) } })],
  'truncated': ['application/json', '{"result":{"data":'],
};

const held = new Set();

function answer(res, status, body, type = 'application/json') {
  const bytes = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, { 'content-type': type, 'content-length': bytes.length });
  res.end(bytes);
}

function echo(req, body) {
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) headers[name] = value;
  return { method: req.method, path: req.url, content_type: req.headers['content-type'], headers, body };
}

function route(req, body) {
  const path = req.url;
  if (path === '/connect') {
    if (body.token === 'refuse') return { error: { code: 'unauthorized', message: 'your session has ended' } };
    if (body.token === 'as-bob') {
      return { result: { user: 'bob', channels: { 'chat:*': ['subscribe', 'publish'], 'news': ['subscribe'] }, info: { name: 'Bob' }, expire_at: 4102444800 } };
    }
    if (body.token === 'echo') return { result: { user: 'echo', info: echo(req, body) } };
    return { result: {} };
  }
  if (path === '/subscribe') {
    if (body.channel === 'chat:members') return { error: { code: 'permission_denied', message: `members only, ${body.user || 'stranger'}` } };
    if (body.channel === 'chat:welcome') return { result: { data: { welcome: body.user } } };
    if (body.channel === 'chat:echo') return { result: { data: echo(req, body) } };
    return { result: {} };
  }
  if (path === '/publish') {
    if (body.data && body.data.text === '') return { error: { code: 'empty_message', message: 'say something' } };
    if (body.channel === 'chat:upper') return { result: { data: { ...body.data, text: String(body.data.text).toUpperCase() } } };
    if (body.channel === 'chat:echo') return { result: { data: echo(req, body) } };
    return { result: {} };
  }
  if (path === '/rpc') {
    if (body.method === 'echo') return { result: { data: echo(req, body) } };
    if (body.method === 'pay') return { error: { code: 'insufficient_funds', message: 'you have 0 coins' } };
    if (body.method === 'nothing') return { result: {} };
    return { error: { code: 'not_available', message: `no method '${body.method}'` } };
  }
  return null;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/slow') {
      held.add(res);
      res.on('close', () => held.delete(res));
      return;
    }
    const status = /^\/status\/(\d{3})$/.exec(req.url);
    if (status) return answer(res, Number(status[1]), {});
    const cannedName = /^\/canned\/(.+)$/.exec(req.url);
    if (cannedName && canned[cannedName[1]]) {
      const [type, text] = canned[cannedName[1]];
      return answer(res, 200, text, type);
    }
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return answer(res, 400, { error: { code: 'bad_request', message: 'the proxy sent something that is not JSON' } });
    }
    const reply = req.method === 'POST' ? route(req, body) : null;
    return reply ? answer(res, 200, reply) : answer(res, 404, { error: { code: 'not_found', message: req.url } });
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
