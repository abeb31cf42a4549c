// The npm package as a user gets it: `npm pack` holds only the ESM build, its types, README and LICENSE; installed
// from the tarball into an empty project (no network needed: it has no runtime dependencies), it connects to a running
// server over the platform's WebSocket and receives publications in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { useServer, withTimeout } from '../test-support/server.mjs';

const run = promisify(execFile);
const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixture = useServer();

test('npm pack holds only the ESM build, its types, README and LICENSE; the tarball installs and connects', { timeout: 120_000 }, async (t) => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'herald-npm-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));

  // dist/ was just built by `npm test`; --ignore-scripts skips prepack's second build.
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: packageDir });
  const [packed] = JSON.parse(stdout);
  const files = packed.files.map((f) => f.path).sort();
  const js = files.filter((f) => f.endsWith('.js'));
  assert.deepEqual(files.filter((f) => !/^dist\/[a-z_]+\.(js|d\.ts)$/.test(f)), ['LICENSE', 'README.md', 'package.json']);
  assert.ok(js.includes('dist/index.js') && files.includes('dist/index.d.ts'), files.join(' '));
  assert.deepEqual(js.map((f) => f.replace(/\.js$/, '.d.ts')), files.filter((f) => f.endsWith('.d.ts')), 'each module has its types');
  const manifest = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8'));
  assert.equal(manifest.type, 'module');
  assert.equal(manifest.license, 'MIT');
  assert.equal(manifest.dependencies, undefined, 'no runtime dependencies');

  const app = path.join(work, 'app');
  await run('mkdir', ['-p', app]);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(work, packed.filename)], { cwd: app });
  writeFileSync(path.join(app, 'main.mjs'), `
    import { HeraldClient } from '@herald/client';
    const client = new HeraldClient(process.argv[2], { transport: 'websocket' });
    await client.connect();
    const seen = [];
    const sub = client.subscribe('chat:from-npm', (e) => {
      seen.push(e.offset);
      if (seen.length === 3) {
        console.log('received ' + seen.join(','));
        client.disconnect();
        process.exit(0);
      }
    });
    await sub.ready();
    console.log('ready ' + client.transport);
  `);

  await fixture.ready();
  // Node 20 has the platform WebSocket behind a flag; later versions have it on.
  const flags = typeof globalThis.WebSocket === 'function' ? [] : ['--experimental-websocket'];
  const child = spawn(process.execPath, [...flags, 'main.mjs', fixture.server.url], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const lines = new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('ready websocket')) resolve();
    });
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await withTimeout(Promise.race([lines, exited]), 30_000, () => `the installed client to subscribe (stdout: ${out}, stderr: ${err})`);
  assert.match(out, /ready websocket/, err);
  for (let i = 1; i <= 3; i++) {
    await fixture.server.publish('chat:from-npm', { i });
  }
  const code = await withTimeout(exited, 30_000, () => `the installed client to receive 3 publications (stdout: ${out}, stderr: ${err})`);
  assert.equal(code, 0, err);
  assert.match(out, /received 1,2,3/);
});
