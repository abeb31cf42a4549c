'use strict';
// Socket.IO 4 peer server for Herald's benchmarks (see ../README.md for the wire protocol).
//   Subscribers: Socket.IO at /socket.io/ (default transports: polling and websocket; websocket-only clients connect at
//                /socket.io/?EIO=4&transport=websocket), then emit "subscribe" with the channel name, or pass
//                ?channel=NAME in the handshake query to be joined on connect.
//   Publishers:  POST /publish/<channel> with the payload as the body -> 204 once io.to(channel).emit("m", body) returned.
// Port: first argument, else the PORT environment variable, else 3000. Binds 127.0.0.1. Run with NODE_ENV=production.
// Engine.IO defaults kept: pingInterval 25 s, pingTimeout 20 s (the server sends "2", the client must answer "3"),
// connectTimeout 45 s (send "40" within it), maxHttpBufferSize 1 MB, perMessageDeflate off.

const http = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';

const PUBLISH = '/publish/';

function publish(req, res, channel) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('error', () => res.destroy());
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    io.to(channel).emit('m', body);
    res.writeHead(204);
    res.end();
  });
}

// Socket.IO takes the requests under /socket.io/ and hands every other request to this listener.
const server = http.createServer((req, res) => {
  const path = req.url.split('?', 1)[0];
  if (path.startsWith(PUBLISH) && path.length > PUBLISH.length) {
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST' });
      res.end();
      return;
    }
    let channel;
    try {
      channel = decodeURIComponent(path.slice(PUBLISH.length));
    } catch {
      res.writeHead(400);
      res.end();
      return;
    }
    publish(req, res, channel);
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(server, { serveClient: false });

io.on('connection', (socket) => {
  const channel = socket.handshake.query.channel;
  if (typeof channel === 'string' && channel.length > 0) {
    socket.join(channel);
  }
  socket.on('subscribe', (ch) => {
    if (typeof ch === 'string' && ch.length > 0) {
      socket.join(ch);
    }
  });
});

server.on('error', (err) => {
  console.error(`socketio peer: ${err.message}`);
  process.exit(1);
});

server.listen(port, host);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    io.close();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
