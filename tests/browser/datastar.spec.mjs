// The Datastar SSE bridge in a real browser: headless Chromium (Debian's), the real
// Datastar 1.0.2 bundle, and the real reference server binary.
//
// Run from the repository root:
//   npm ci --prefix tests/browser && npm --prefix tests/browser test
//
// The test builds target/debug/tidings if needed (unless TIDINGS_BIN names a built
// binary), fetches the Datastar bundle with .ci/fetch-datastar.sh (to DATASTAR_BUNDLE
// if set) and serves it from a local HTTP server; nothing is downloaded by the
// browser. Without /usr/bin/chromium (or CHROMIUM_PATH) it is skipped, except
// with CI=true, where that is a failure.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// scripts/test sets these after `cargo test` built the binary; run alone, the test
// builds it (a no-op when it is fresh) and fetches the bundle itself.
const BINARY = process.env.TIDINGS_BIN || path.join(ROOT, 'target/debug/tidings');
const BUNDLE = process.env.DATASTAR_BUNDLE || path.join(ROOT, 'target/datastar/datastar.js');
// A fixed key (not demo mode): the cookie must stay valid across the restart.
const SECRET = 'browser-test-secret-0123456789abcdef-0123456789';
const COOKIE = 'tidings_token';
/** Bound for anything the page must show after an action. */
const SHOWS_UP = 20_000;
/** Bound for the page to reconnect after the restart (Datastar backs off 1, 2, 4, 8 s...). */
const RECONNECTS = 60_000;

const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') {
  throw new Error(`CI=true but no Chromium at ${CHROMIUM}: install Debian's chromium`);
}
const skip = haveChromium ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)`;

/** An HS256 JWT for `sub`, valid for an hour. */
function token(sub) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({
    sub,
    exp: Math.floor(Date.now() / 1000) + 3600,
  })}`;
  const signature = createHmac('sha256', SECRET).update(body).digest('base64url');
  return `${body}.${signature}`;
}

/** Serves the Datastar bundle on 127.0.0.1; module scripts need CORS. */
async function serveBundle() {
  const bundle = fs.readFileSync(BUNDLE);
  const server = createServer((request, response) => {
    if (request.url !== '/datastar.js') {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, {
      'content-type': 'text/javascript; charset=utf-8',
      'access-control-allow-origin': '*',
    });
    response.end(bundle);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** A running reference server. */
class Tidings {
  constructor(child, base, log) {
    this.child = child;
    this.base = base;
    this.log = log;
  }

  /** Starts the binary on `bind` and waits for its "listening" line. */
  static async start({ bind, databaseUrl, datastarUrl }) {
    const log = [];
    const child = spawn(BINARY, [], {
      cwd: ROOT,
      env: {
        ...process.env,
        TIDINGS_BIND: bind,
        TIDINGS_DATABASE_URL: databaseUrl,
        TIDINGS_DATASTAR_URL: datastarUrl,
        TIDINGS_JWT_SECRET: SECRET,
        TIDINGS_SSE_COOKIE: COOKIE,
        TIDINGS_SHUTDOWN_TIMEOUT: '5s',
        RUST_LOG: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr.on('data', (chunk) => log.push(chunk.toString()));
    const base = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line:\n${log.join('')}`)), 30_000);
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk.toString();
        const found = out.match(/tidings listening on (http:\/\/\S+)/);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]);
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`tidings exited with ${code}:\n${log.join('')}`));
      });
    });
    return new Tidings(child, base, log);
  }

  /** SIGTERM, then waits for the process to exit (bounded). */
  async stop() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  /** A REST call as `sub`; returns the parsed body (or null). */
  async api(method, pathname, sub, body) {
    const response = await fetch(`${this.base}${pathname}`, {
      method,
      headers: {
        authorization: `Bearer ${token(sub)}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${pathname}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
}

let bundleServer;
let datastarUrl;
let databaseUrl;
let server;
let browser;
let page;

before(
  async () => {
    if (skip) return;
    execFileSync('bash', ['.ci/fetch-datastar.sh', BUNDLE], { cwd: ROOT, stdio: 'inherit', timeout: 300_000 });
    if (!process.env.TIDINGS_BIN) {
      execFileSync('cargo', ['build', '--quiet', '--bin', 'tidings'], {
        cwd: ROOT,
        stdio: 'inherit',
        timeout: 1_200_000,
      });
    }
    assert.ok(fs.existsSync(BINARY), `no server binary at ${BINARY}`);
    bundleServer = await serveBundle();
    datastarUrl = `http://127.0.0.1:${bundleServer.address().port}/datastar.js`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-browser-'));
    databaseUrl = `sqlite:${path.join(dir, 'tidings.db')}`;
    server = await Tidings.start({ bind: '127.0.0.1:0', databaseUrl, datastarUrl });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const context = await browser.newContext();
    await context.addCookies([{ name: COOKIE, value: token('alice'), url: server.base }]);
    page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') console.error(`[page] ${message.text()}`);
    });
  },
  { timeout: 1_500_000 },
);

after(async () => {
  await browser?.close();
  await server?.stop();
  bundleServer?.close();
});

/** Waits until the page's SSE stream answered 200, i.e. it is subscribed. */
function streamOpened(on = page) {
  return on.waitForResponse(
    (response) => response.url().includes('/realtime/sse') && response.status() === 200,
    { timeout: RECONNECTS },
  );
}

test('the page renders the list on the server and subscribes', { skip }, async () => {
  const early = await server.api('POST', '/api/todos', 'bob', { title: 'made before the page' });
  const opened = streamOpened();
  await page.goto(`${server.base}/datastar`, { timeout: SHOWS_UP });
  await opened;
  assert.equal(await page.locator('#user').textContent(), 'alice');
  await page.locator(`#todo-${early.id}`).waitFor({ timeout: SHOWS_UP });
  assert.equal(await page.locator(`#todo-${early.id} .title`).textContent(), 'made before the page');
  // A reload would clear this; it must survive everything below.
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
});

let todoId;

test('a todo created over REST appears without a reload', { skip }, async () => {
  const todo = await server.api('POST', '/api/todos', 'bob', { title: 'buy <milk>' });
  todoId = todo.id;
  const item = page.locator(`#todo-${todoId}`);
  await item.waitFor({ timeout: SHOWS_UP });
  assert.equal(await item.locator('.title').textContent(), 'buy <milk>');
  assert.equal(await page.locator('#todos > li').last().getAttribute('id'), `todo-${todoId}`);
  assert.equal(await page.evaluate(() => window.__sameDocument), true);
});

test('an update morphs the item in place', { skip }, async () => {
  // Morphing keeps the element: a property set on it survives the update.
  await page.evaluate((id) => {
    document.getElementById(`todo-${id}`).__marked = true;
  }, todoId);
  await server.api('PATCH', `/api/todos/${todoId}`, 'bob', { done: true, title: 'bought milk' });
  await page.locator(`#todo-${todoId}.done`).waitFor({ timeout: SHOWS_UP });
  assert.equal(await page.locator(`#todo-${todoId} .title`).textContent(), 'bought milk');
  assert.equal(await page.evaluate((id) => document.getElementById(`todo-${id}`).__marked, todoId), true);
});

test('a delete removes the item', { skip }, async () => {
  await server.api('DELETE', `/api/todos/${todoId}`, 'bob');
  await page.locator(`#todo-${todoId}`).waitFor({ state: 'detached', timeout: SHOWS_UP });
});

test('a datastar_broadcast patches the page', { skip }, async () => {
  const { reached } = await server.api('POST', '/demo/datastar/celebrate', 'carol');
  assert.ok(reached >= 1, `reached ${reached} streams`);
  const banner = page.locator('#celebration');
  await banner.filter({ hasText: 'Celebration #' }).waitFor({ timeout: SHOWS_UP });
  assert.match(await banner.textContent(), /Celebration #\d+ by carol/);
});

/** Opens the Datastar page signed in as `sub`, in a context of its own, once its stream is open. */
async function openPageAs(sub) {
  const context = await browser.newContext();
  await context.addCookies([{ name: COOKIE, value: token(sub), url: server.base }]);
  const opened = await context.newPage();
  opened.on('console', (message) => {
    if (message.type() === 'error') console.error(`[page ${sub}] ${message.text()}`);
  });
  const subscribed = streamOpened(opened);
  await opened.goto(`${server.base}/datastar`, { timeout: SHOWS_UP });
  await subscribed;
  assert.equal(await opened.locator('#user').textContent(), sub);
  // A reload would clear this.
  await opened.evaluate(() => {
    window.__sameDocument = true;
  });
  return { page: opened, context };
}

// Notes are owner-only (src/demo: rule owner:owner_id), so handing one over is a
// `leave` for the old owner's stream and an `enter` for the new owner's.
test('a note handed to another user leaves its page and enters theirs', { skip }, async () => {
  const note = await server.api('POST', '/api/notes', 'ann', { body: 'for <bob>', internal: 'not for pages' });
  const ann = await openPageAs('ann');
  const bob = await openPageAs('bob');
  try {
    const onAnn = ann.page.locator(`#notes > #note-${note.id}`);
    const onBob = bob.page.locator(`#notes > #note-${note.id}`);
    // Rendered on the server for its owner only.
    assert.equal(await onAnn.locator('.body').textContent(), 'for <bob>');
    assert.equal(await onBob.count(), 0);

    await server.api('PATCH', `/api/notes/${note.id}`, 'ann', { owner_id: 'bob' });
    await onAnn.waitFor({ state: 'detached', timeout: SHOWS_UP }); // leave
    await onBob.waitFor({ timeout: SHOWS_UP }); // enter, with the whole record
    assert.equal(await onBob.locator('.body').textContent(), 'for <bob>');
    assert.equal(await bob.page.locator('#notes > li').count(), 1);
    assert.ok(!(await bob.page.content()).includes('not for pages'), 'hidden field on the page');

    // And back: a leave on bob's page, an enter on ann's.
    await server.api('PATCH', `/api/notes/${note.id}`, 'bob', { owner_id: 'ann', body: 'back to ann' });
    await onBob.waitFor({ state: 'detached', timeout: SHOWS_UP });
    await onAnn.waitFor({ timeout: SHOWS_UP });
    assert.equal(await onAnn.locator('.body').textContent(), 'back to ann');
    assert.equal(await ann.page.locator('#notes > li').count(), 1);

    for (const { page: opened } of [ann, bob]) {
      assert.equal(await opened.evaluate(() => window.__sameDocument), true, 'no reload');
    }
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});

// The todos renderer keys its HTML by viewer: one event, rendered once for the owner
// and once for everyone else, so only the owner's page shows the "yours" badge.
test('a todo shows its owner-only badge on its owner\'s page only', { skip }, async () => {
  const ann = await openPageAs('ann');
  const bob = await openPageAs('bob');
  try {
    const todo = await server.api('POST', '/api/todos', 'ann', { title: 'ann\'s own' });
    const onAnn = ann.page.locator(`#todo-${todo.id}`);
    const onBob = bob.page.locator(`#todo-${todo.id}`);
    await onAnn.waitFor({ timeout: SHOWS_UP });
    await onBob.waitFor({ timeout: SHOWS_UP });
    assert.equal(await onAnn.locator('.yours').count(), 1);
    assert.equal(await onBob.locator('.yours').count(), 0);
    assert.equal(await onBob.locator('.title').textContent(), 'ann\'s own');
    for (const { page: opened } of [ann, bob]) {
      assert.equal(await opened.evaluate(() => window.__sameDocument), true, 'no reload');
    }
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});

/**
 * A WebSocket client of `sub` subscribed to `todos:*`, in a same-origin page of
 * `context` (the gateway refuses other origins); it keeps the events it receives.
 */
async function watchOverWebSocket(context, sub) {
  const watcher = await context.newPage();
  await watcher.goto(`${server.base}/healthz`, { timeout: SHOWS_UP });
  await watcher.evaluate(
    ({ url, jwt, bound }) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no subscription in time')), bound);
        const ws = new WebSocket(url);
        window.__events = [];
        ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token: jwt }));
        ws.onerror = () => reject(new Error('WebSocket failed'));
        ws.onmessage = (message) => {
          const frame = JSON.parse(message.data);
          if (frame.type === 'welcome') {
            ws.send(JSON.stringify({ type: 'subscribe', id: 's1', pattern: 'todos:*' }));
          } else if (frame.type === 'subscribed') {
            clearTimeout(timer);
            resolve();
          } else if (frame.type === 'event') {
            window.__events.push(frame);
          } else if (frame.type === 'error') {
            reject(new Error(message.data));
          }
        };
      }),
    { url: `${server.base.replace(/^http/, 'ws')}/realtime/subscribe`, jwt: token(sub), bound: SHOWS_UP },
  );
  return {
    /** Waits for the `action` event of todo `key`; returns its frame. */
    async saw(key, action) {
      const found = await watcher.waitForFunction(
        ([k, a]) => window.__events.find((e) => e.key === k && e.action === a),
        [key, action],
        { timeout: SHOWS_UP },
      );
      return found.jsonValue();
    },
  };
}

/** Waits until `locator`'s text is exactly `text`. */
async function hasText(locator, text) {
  await locator.filter({ hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }).waitFor({
    timeout: SHOWS_UP,
  });
}

// The page writes too: the owner's controls call the demo's Datastar actions
// (@post, @patch, @delete); the answers carry no HTML, so both pages, and a WebSocket
// client, learn of each change from their own streams.
test('the owner adds, ticks, renames and deletes on the page; the other page and a WebSocket client follow', { skip }, async () => {
  const ann = await openPageAs('ann');
  const bob = await openPageAs('bob');
  const ws = await watchOverWebSocket(bob.context, 'carl');
  try {
    // Add: the new todo shows up on both pages, and the input is emptied.
    await ann.page.locator('#add input').fill("ann's <tea>");
    await ann.page.locator('#add button').click();
    const mine = ann.page.locator('#todos > li', { hasText: "ann's <tea>" });
    await mine.waitFor({ timeout: SHOWS_UP });
    const id = (await mine.getAttribute('id')).replace(/^todo-/, '');
    await ann.page.waitForFunction(() => document.querySelector('#add input').value === '', null, {
      timeout: SHOWS_UP,
    });
    const onAnn = ann.page.locator(`#todo-${id}`);
    const onBob = bob.page.locator(`#todo-${id}`);
    await onBob.waitFor({ timeout: SHOWS_UP });
    assert.equal(await onBob.locator('.title').textContent(), "ann's <tea>");
    const created = await ws.saw(id, 'create');
    assert.equal(created.record.owner_id, 'ann');

    // Only the owner has the controls.
    for (const control of ['.tick', 'form.rename', '.delete', '.yours']) {
      assert.equal(await onAnn.locator(control).count(), 1, `ann's ${control}`);
    }
    assert.equal(await onBob.locator('input, button, form, .yours').count(), 0);

    // Tick.
    await onAnn.locator('.tick').click();
    await bob.page.locator(`#todo-${id}.done`).waitFor({ timeout: SHOWS_UP });
    await ann.page.locator(`#todo-${id}.done`).waitFor({ timeout: SHOWS_UP });
    assert.equal((await ws.saw(id, 'update')).record.done, true);

    // Rename.
    await onAnn.locator('form.rename input[name="title"]').fill('green tea');
    await onAnn.locator('form.rename button').click();
    await hasText(onBob.locator('.title'), 'green tea');
    await hasText(onAnn.locator('.title'), 'green tea');

    // An empty title is refused: the page says why, and nothing changes (Chromium
    // logs the 400 to the console, which shows up in the output as "[page ann]").
    await onAnn.locator('form.rename input[name="title"]').fill('');
    await onAnn.locator('form.rename button').click();
    await hasText(ann.page.locator('#action-error'), 'A title needs 1 to 10000 characters.');
    assert.equal(await onBob.locator('.title').textContent(), 'green tea');

    // Delete: gone from both pages and announced over the WebSocket; the next action
    // cleared the refusal.
    await onAnn.locator('.delete').click();
    await onBob.waitFor({ state: 'detached', timeout: SHOWS_UP });
    await onAnn.waitFor({ state: 'detached', timeout: SHOWS_UP });
    await ws.saw(id, 'delete');
    assert.equal(await ann.page.locator('#action-error').textContent(), '');

    for (const { page: opened } of [ann, bob]) {
      assert.equal(await opened.evaluate(() => window.__sameDocument), true, 'no reload');
    }
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});

test('after a restart the page reconnects and catches up on what it missed', { skip }, async () => {
  const port = new URL(server.base).port;
  await server.stop();

  // While the page's server is down, another process on the same database writes.
  const other = await Tidings.start({ bind: '127.0.0.1:0', databaseUrl, datastarUrl });
  let missed;
  try {
    missed = await other.api('POST', '/api/todos', 'bob', { title: 'written while you were away' });
  } finally {
    await other.stop();
  }

  const reopened = streamOpened();
  server = await Tidings.start({ bind: `127.0.0.1:${port}`, databaseUrl, datastarUrl });
  const resumed = await reopened;
  assert.match(resumed.request().headers()['last-event-id'] ?? '', /^.+:\d+$/, 'resumed with a cursor');
  await page.locator(`#todo-${missed.id}`).waitFor({ timeout: RECONNECTS });
  assert.equal(await page.locator(`#todo-${missed.id}`).count(), 1);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload');

  // And it is live again.
  const live = await server.api('POST', '/api/todos', 'bob', { title: 'and after' });
  await page.locator(`#todo-${live.id}`).waitFor({ timeout: SHOWS_UP });
});
