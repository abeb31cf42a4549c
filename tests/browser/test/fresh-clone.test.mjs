// Issue 13, item 7: the demo works after `dotnet build` on a fresh clone, where clients/js/dist does not exist.
// The repository's files (tracked and new, as git lists them: no bin/, obj/, node_modules/ or dist/) are copied to a
// temporary directory, and there:
//   1. `dotnet build src/Herald.Server` with npm "absent" (-p:HeraldNpm=<a missing command>): the build succeeds and
//      says what to install; the served page shows the same in plain words instead of doing nothing;
//   2. `dotnet build src/Herald.Server` again with npm: the build makes the JS client (npm ci, tsc) and installs the
//      pages' libraries (npm ci in src/Herald.Server/vendor), the server serves /js/index.js and /vendor, and Chromium
//      loads the demo, joins and exchanges a message, then opens the board (herald.msgpack) and the dashboard (charts).
// The second build compiles nothing new (only the JS step runs), which keeps this test's cost to one server build.
//
// Run: `npm ci && node --test` in tests/browser. CHROMIUM overrides the browser (default /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const BUILD_MS = 600_000;
const STEP_MS = 20_000;

let clone;
let browser;
const servers = [];

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

/** Runs `dotnet build` in the clone; resolves with its output, rejects (with the output) when it fails. */
function build(extra = []) {
  return new Promise((resolve, reject) => {
    const child = spawn('dotnet', ['build', 'src/Herald.Server/Herald.Server.csproj', '-c', 'Release', '-nologo', ...extra], {
      cwd: clone,
      env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), BUILD_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`dotnet build exited ${code}:\n${output.split('\n').slice(-40).join('\n')}`));
    });
  });
}

/** Starts the clone's server on a free port; resolves with its base URL once /healthz answers. */
async function startServer() {
  const baseUrl = `http://127.0.0.1:${await freePort()}`;
  // As `dotnet run` starts it (launchSettings.json): the development profile, with its chat namespace.
  const env = { ...process.env, ASPNETCORE_ENVIRONMENT: 'Development' };
  delete env.ASPNETCORE_URLS;
  const dll = path.join(clone, 'src/Herald.Server/bin/Release/net10.0/herald.dll');
  // From the project directory, as `dotnet run` does: that is the content root where appsettings.*.json are read.
  const server = spawn('dotnet', [dll, '--urls', baseUrl], { cwd: path.join(clone, 'src/Herald.Server'), env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.log = '';
  server.stdout.on('data', (c) => { server.log += c; });
  server.stderr.on('data', (c) => { server.log += c; });
  servers.push(server);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(2_000) })).ok) return { baseUrl, server };
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the clone's server did not start:\n${server.log}`);
}

async function stop(server) {
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

before(() => {
  assert.ok(existsSync(executablePath), `no Chromium at ${executablePath}: install it (apt-get install chromium)`);
  clone = mkdtempSync(path.join(os.tmpdir(), 'herald-fresh-clone-'));
  // What a clone would hold: the files git tracks or would add, as they are in the working tree.
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024 })
    .toString().split('\0').filter((f) => f !== '' && existsSync(path.join(repoRoot, f)));
  for (const file of files) {
    mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
    cpSync(path.join(repoRoot, file), path.join(clone, file));
  }
  assert.ok(!existsSync(path.join(clone, 'clients/js/dist')), 'the copy has no built JS client');
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const server of servers) await stop(server);
  if (clone) rmSync(clone, { recursive: true, force: true });
});

test('on a fresh clone, `dotnet build` alone makes the demo work; without npm the build and the page say what to run', { timeout: 2 * BUILD_MS }, async () => {
  const withoutNpm = await build(['-p:HeraldNpm=herald-no-such-npm']);
  assert.match(withoutNpm, /npm not found .*Node\.js 20\+ and npm/);
  assert.ok(!existsSync(path.join(clone, 'clients/js/dist/index.js')));

  browser = await chromium.launch({ executablePath, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  {
    const { baseUrl, server } = await startServer();
    assert.equal((await fetch(`${baseUrl}/js/index.js`)).status, 404);
    const page = await browser.newPage();
    await page.goto(`${baseUrl}/`, { timeout: STEP_MS });
    await page.locator('#js-missing').waitFor({ state: 'visible', timeout: STEP_MS });
    assert.match(await page.locator('#js-missing').textContent(), /Node\.js 20\+ and npm/);
    // The board and the dashboard say the same, naming their libraries too.
    for (const [url, library] of [['/board.html', '/vendor/msgpack/index.mjs'], ['/dashboard.html', '/vendor/uplot/uPlot.esm.js']]) {
      assert.equal((await fetch(baseUrl + library)).status, 404);
      await page.goto(baseUrl + url, { timeout: STEP_MS });
      await page.locator('#js-missing').waitFor({ state: 'visible', timeout: STEP_MS });
      assert.match(await page.locator('#js-missing').textContent(), /Node\.js 20\+ and npm/);
    }
    await page.close();
    await stop(server);
    assert.match(server.log, /demo pages cannot connect/);
  }

  const withNpm = await build();
  assert.ok(existsSync(path.join(clone, 'clients/js/dist/index.js')), `the build made the JS client:\n${withNpm.split('\n').slice(-30).join('\n')}`);
  const { baseUrl } = await startServer();
  const js = await fetch(`${baseUrl}/js/index.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type') ?? '', /javascript/);

  // The pages' libraries, which the same build installed (src/Herald.Server/vendor) and copied.
  for (const library of ['/vendor/uplot/uPlot.esm.js', '/vendor/uplot/uPlot.min.css', '/vendor/msgpack/index.mjs']) {
    assert.equal((await fetch(baseUrl + library)).status, 200, library);
  }
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') errors.push(msg.text()); });
  await page.goto(`${baseUrl}/`, { timeout: STEP_MS });
  assert.equal(await page.locator('#js-missing').isVisible(), false);
  await page.fill('#name', 'fresh');
  await page.fill('#room', 'clone');
  await page.click('#join');
  await page.waitForSelector('#chat:not(.hidden)', { timeout: STEP_MS }).catch((err) => {
    throw new Error(`${err.message}\npage errors: ${JSON.stringify(errors)}`);
  });
  await page.fill('#text', 'it works from a fresh clone');
  await page.click('#send');
  await page.locator('#messages li', { hasText: 'it works from a fresh clone' }).waitFor({ timeout: STEP_MS });
  // The board connects over herald.msgpack (the import map finds the copied library) and draws this tab's token.
  await page.goto(`${baseUrl}/board.html`, { timeout: STEP_MS });
  await page.locator('#status', { hasText: 'connected (websocket, msgpack)' }).waitFor({ timeout: STEP_MS });
  await page.waitForFunction(() => window.board.me !== null, null, { timeout: STEP_MS });
  // The dashboard draws its charts.
  await page.goto(`${baseUrl}/dashboard.html`, { timeout: STEP_MS });
  await page.waitForFunction(() => document.querySelectorAll('.chart .uplot canvas').length === 4, null, { timeout: STEP_MS });
  assert.deepEqual(errors, []);
});
