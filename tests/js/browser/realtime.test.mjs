// Browser tests of static/realtime-client.js in headless Chromium against the
// real tidings server, with a TCP proxy between the browser and the server.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { missingPrereqs, suiteOptions, launch, clientPage, until, pageLog } from "../support/browser.mjs";
import { startServer, api } from "../support/server.mjs";
import { startProxy } from "../support/proxy.mjs";
import { token } from "../support/jwt.mjs";
import { compareCursors } from "../../../static/realtime-client.js";

const missing = missingPrereqs();
const SECRET = crypto.randomBytes(24).toString("hex");
const FAST = { minDelay: 100, maxDelay: 1000, pingInterval: 5000, pongTimeout: 3000 };

/** A running server behind a proxy; every test gets its own. */
async function stack(env = {}) {
  const proxy = await startProxy();
  const server = await startServer({ env: { TIDINGS_JWT_SECRET: SECRET, ...env } });
  proxy.setTarget(server.url);
  return {
    proxy,
    server,
    async stop() {
      await proxy.close();
      await server.stop();
    },
  };
}

async function addTodos(server, who, titles) {
  const t = token(SECRET, who);
  const out = [];
  for (const title of titles) {
    const r = await api(server.url, t, "POST", "/api/todos", { title });
    assert.equal(r.status, 201, `POST /api/todos: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(r.body);
  }
  return out;
}

function assertStrictlyIncreasing(cursors) {
  for (let i = 1; i < cursors.length; i++) {
    assert.equal(compareCursors(cursors[i - 1], cursors[i]), -1, `cursor ${cursors[i]} does not follow ${cursors[i - 1]}`);
  }
}

describe("realtime client in Chromium against the real server", suiteOptions(missing), () => {
  let browser;
  const cleanups = [];

  before(async () => {
    browser = await launch();
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (browser) await browser.close();
  });

  async function setup(env, { options = FAST, getToken } = {}) {
    const s = await stack(env);
    cleanups.push(() => s.stop());
    const page = await clientPage(browser, s.server.url, {
      wsUrl: s.proxy.wsUrl(),
      options,
      getToken: getToken || (async () => token(SECRET, "ann")),
    });
    cleanups.push(() => page.context().close());
    return { ...s, page };
  }

  test("connects, subscribes, delivers events; unsubscribe stops them", async () => {
    const { server, page } = await setup();
    await page.evaluate(() => {
      window.sub("a", "todos:*");
      window.sub("b", "todos:*");
    });
    await until(page, () => window.log.subs.a.ready && window.log.subs.b.ready);
    const log0 = await pageLog(page);
    assert.deepEqual(log0.states.map((s) => s.s), ["connecting", "connected"]);
    assert.deepEqual(log0.tokens, ["connect"]);
    const created = await addTodos(server, "ann", ["one", "two", "three"]);
    await until(page, () => window.log.subs.a.events.length >= 3 && window.log.subs.b.events.length >= 3);
    let log = await pageLog(page);
    assert.deepEqual(log.subs.a.events.map((e) => [e.action, e.title]), created.map((t) => ["create", t.title]));
    assertStrictlyIncreasing(log.subs.a.events.map((e) => e.cursor));

    const unsub = await page.evaluate(() => window.subscriptions.a.unsubscribe().then((f) => f && f.type));
    assert.equal(unsub, "unsubscribed");
    await addTodos(server, "ann", ["four"]);
    // b still receives; once it has "four", a would have had it too.
    await until(page, () => window.log.subs.b.events.length >= 4);
    log = await pageLog(page);
    assert.equal(log.subs.b.events[3].title, "four");
    assert.equal(log.subs.a.events.length, 3, "unsubscribed callback still called");
    assert.deepEqual(log.errors, []);
  });

  test("a cut connection resumes by itself: every missed event once, in order, no resync", async () => {
    const { server, proxy, page } = await setup();
    await page.evaluate(() => {
      window.sub("all", "todos:*");
      window.sub("dup", "todos:*");
    });
    await until(page, () => window.log.subs.all.ready && window.log.subs.dup.ready);
    await addTodos(server, "ann", ["before-1", "before-2"]);
    await until(page, () => window.log.subs.all.events.length === 2 && window.log.subs.dup.events.length === 2);

    const attemptsBefore = proxy.attempts.length;
    proxy.cut();
    await until(page, () => window.client.state === "reconnecting");
    const missed = Array.from({ length: 6 }, (_, i) => `away-${i}`);
    await addTodos(server, "ann", missed);
    // The client keeps trying while the proxy is down.
    const deadline = Date.now() + 10000;
    while (proxy.attempts.length < attemptsBefore + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(proxy.attempts.length >= attemptsBefore + 2, "client did not retry while the network was down");
    proxy.restore();
    await until(page, () => window.log.subs.all.events.length >= 8 && window.log.subs.dup.events.length >= 8 && window.client.state === "connected");
    await addTodos(server, "ann", ["after"]);
    await until(page, () => window.log.subs.all.events.length >= 9 && window.log.subs.dup.events.length >= 9);
    const log = await pageLog(page);
    const want = ["before-1", "before-2", ...missed, "after"];
    for (const name of ["all", "dup"]) {
      assert.deepEqual(log.subs[name].events.map((e) => e.title), want, `${name}: events lost, repeated or out of order`);
      assertStrictlyIncreasing(log.subs[name].events.map((e) => e.cursor));
      assert.deepEqual(log.subs[name].resyncs, [], `${name}: unexpected resync`);
    }
    assert.deepEqual(log.tokens.slice(0, 1), ["connect"]);
    assert.ok(log.tokens.slice(1).every((r) => r === "reconnect"), `token reasons ${log.tokens}`);
  });

  test("1012 at the server's connection age limit: reconnect and resume, nothing missed", async () => {
    const { server, page } = await setup({ TIDINGS_MAX_CONNECTION_AGE: "1s" });
    await page.evaluate(() => window.sub("all", "todos:*"));
    await until(page, () => window.log.subs.all.ready);
    // Events keep coming for about 3 s, across at least two age-limit closes; the pace
    // only spreads them over that time.
    const titles = [];
    for (let i = 0; i < 12; i++) {
      const [todo] = await addTodos(server, "ann", [`t-${i}`]);
      titles.push(todo.title);
      await new Promise((r) => setTimeout(r, 250));
    }
    await until(page, (n) => window.log.subs.all.events.length >= n && window.client.state === "connected", titles.length);
    const log = await pageLog(page);
    assert.deepEqual(log.subs.all.events.map((e) => e.title), titles, "events lost, repeated or out of order");
    assertStrictlyIncreasing(log.subs.all.events.map((e) => e.cursor));
    assert.deepEqual(log.subs.all.resyncs, [], "unexpected resync");
    const ageCloses = log.retries.filter((r) => r.code === 1012);
    assert.ok(ageCloses.length >= 2, `expected 1012 reconnects, got retries ${JSON.stringify(log.retries)}`);
    assert.deepEqual(log.errors, []);
  });

  test("filtered subscriptions get enter and leave, live and across a cut", async () => {
    const { server, proxy, page } = await setup();
    await page.evaluate(() => {
      window.sub("open", "todos:*", { filter: { done: false } });
      window.sub("notes", "notes:*");
    });
    await until(page, () => window.log.subs.open.ready && window.log.subs.notes.ready);
    const ann = token(SECRET, "ann");
    const [todo] = await addTodos(server, "ann", ["t"]);
    const patch = async (path, body) => {
      const r = await api(server.url, ann, "PATCH", path, body);
      assert.equal(r.status, 200, `PATCH ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    };
    await patch(`/api/todos/${todo.id}`, { done: true });
    await patch(`/api/todos/${todo.id}`, { title: "unseen while done" });
    await patch(`/api/todos/${todo.id}`, { done: false });
    await until(page, () => window.log.subs.open.events.length >= 3);

    // During a cut: the todo leaves, and ann's note is handed to bob.
    proxy.cut();
    await until(page, () => window.client.state === "reconnecting");
    const note = await api(server.url, ann, "POST", "/api/notes", { body: "ANN-ONLY" });
    assert.equal(note.status, 201);
    await patch(`/api/todos/${todo.id}`, { done: true });
    await patch(`/api/notes/${note.body.id}`, { owner_id: "bob" });
    proxy.restore();
    await until(page, () => window.log.subs.open.events.length >= 4 && window.log.subs.notes.events.length >= 2);

    const log = await pageLog(page);
    assert.deepEqual(
      log.subs.open.events.map((e) => [e.action, e.key, e.title]),
      [
        ["create", todo.id, "t"],
        ["leave", todo.id, null],
        ["enter", todo.id, "unseen while done"],
        ["leave", todo.id, null],
      ],
    );
    assert.deepEqual(
      log.subs.notes.events.map((e) => [e.action, e.key]),
      [
        ["create", note.body.id],
        ["leave", note.body.id],
      ],
    );
    assert.equal(log.subs.notes.events[1].record, null, "a leave carries the id only");
    for (const name of ["open", "notes"]) {
      assertStrictlyIncreasing(log.subs[name].events.map((e) => e.cursor));
      assert.deepEqual(log.subs[name].resyncs, [], `${name}: unexpected resync`);
    }
    // The filter stays on the subscription, and bad filters are refused at once.
    assert.deepEqual(await page.evaluate(() => window.subscriptions.open.filter), { done: false });
    const refused = await page.evaluate(() =>
      window.client.subscribe("notes:*", () => {}, { filter: { internal: "x" } }).ready.then(
        () => "accepted",
        (e) => e.code,
      ),
    );
    assert.equal(refused, "bad_request");
    const thrown = await page.evaluate(() => {
      try {
        window.client.subscribe("todos:*", () => {}, { filter: ["done"] });
        return "no error";
      } catch (e) {
        return e.name;
      }
    });
    assert.equal(thrown, "TypeError");
  });

  test("subscribing from a snapshot's X-Tidings-Cursor delivers exactly the changes after it", async () => {
    const { server, page } = await setup();
    await addTodos(server, "ann", ["in the snapshot"]);
    const res = await fetch(`${server.url}/api/todos`, { headers: { authorization: `Bearer ${token(SECRET, "ann")}` } });
    const cursor = res.headers.get("x-tidings-cursor");
    assert.match(cursor, /^[^:]+:\d+$/);
    assert.deepEqual((await res.json()).map((t) => t.title), ["in the snapshot"]);
    await addTodos(server, "ann", ["after the snapshot"]);
    await page.evaluate((since) => window.sub("from", "todos:*", { since }), cursor);
    await until(page, () => window.log.subs.from.ready && window.log.subs.from.events.length >= 1);
    await addTodos(server, "ann", ["live"]);
    await until(page, () => window.log.subs.from.events.length >= 2);
    const log = await pageLog(page);
    assert.equal(log.subs.from.ready.recovered, true);
    assert.deepEqual(log.subs.from.events.map((e) => [e.action, e.title]), [["create", "after the snapshot"], ["create", "live"]]);
  });

  test("mutation ids come back on the events of a REST write and of a publish", async () => {
    const { server, page } = await setup();
    await page.evaluate(() => window.sub("all", "todos:*"));
    await until(page, () => window.log.subs.all.ready);
    const res = await fetch(`${server.url}/api/todos`, {
      method: "POST",
      headers: { authorization: `Bearer ${token(SECRET, "ann")}`, "content-type": "application/json", "x-tidings-mutation": "rest-7" },
      body: JSON.stringify({ title: "tagged" }),
    });
    assert.equal(res.status, 201);
    const published = await page.evaluate(() => window.client.publish("todos", "typing", { x: 1 }, { mutation: "pub-8" }).then((f) => f.type));
    assert.equal(published, "published");
    await addTodos(server, "ann", ["untagged"]);
    await until(page, () => window.log.subs.all.events.length >= 3);
    const log = await pageLog(page);
    assert.deepEqual(
      log.subs.all.events.map((e) => [e.action, e.mutation]),
      [
        ["create", "rest-7"],
        ["broadcast", "pub-8"],
        ["create", null],
      ],
    );
  });

  test("a cut longer than the replay cap: onResync once, then live delivery", async () => {
    const { server, proxy, page } = await setup({ TIDINGS_REPLAY_CAP: "3" });
    await page.evaluate(() => window.sub("all", "todos:*"));
    await until(page, () => window.log.subs.all.ready);
    await addTodos(server, "ann", ["first"]);
    await until(page, () => window.log.subs.all.events.length === 1);
    proxy.cut();
    await until(page, () => window.client.state === "reconnecting");
    await addTodos(server, "ann", Array.from({ length: 10 }, (_, i) => `missed-${i}`));
    proxy.restore();
    await until(page, () => window.log.subs.all.resyncs.length >= 1 && window.client.state === "connected");
    await addTodos(server, "ann", ["live-after-resync"]);
    await until(page, () => window.log.subs.all.events.some((e) => e.title === "live-after-resync"));
    const log = await pageLog(page);
    assert.equal(log.subs.all.resyncs.length, 1, `resyncs: ${log.subs.all.resyncs}`);
    assert.ok(["too_many", "too_old"].includes(log.subs.all.resyncs[0]), `reason ${log.subs.all.resyncs[0]}`);
    assert.deepEqual(
      log.subs.all.events.map((e) => e.title),
      ["first", "live-after-resync"],
      "no partial replay, then live",
    );
  });

  test("short-lived tokens are refreshed in place and subscriptions stay", async () => {
    const { server, proxy, page } = await setup(
      { TIDINGS_REFRESH_NOTICE: "2s", TIDINGS_EXPIRY_GRACE: "1s" },
      { getToken: async () => token(SECRET, "ann", 3) },
    );
    await page.evaluate(() => window.sub("all", "todos:*"));
    await until(page, () => window.log.subs.all.ready);
    const t0 = Date.now();
    // The first token dies after 3 s + 1 s grace; wait well past that.
    await until(page, (start) => Date.now() - start > 5500 && window.log.refreshed >= 3, t0, 20000);
    await addTodos(server, "ann", ["after-refresh"]);
    await until(page, () => window.log.subs.all.events.some((e) => e.title === "after-refresh"));
    const log = await pageLog(page);
    assert.deepEqual(log.states.map((s) => s.s), ["connecting", "connected"], "the connection was dropped");
    assert.equal(log.tokens[0], "connect");
    assert.ok(log.tokens.slice(1).every((r) => r === "refresh"), `token reasons ${log.tokens}`);
    assert.equal(proxy.attempts.length, 1, "the client reconnected instead of refreshing");
    assert.deepEqual(log.errors, []);
  });

  test("4001 makes the client fetch a new token before it reconnects", async () => {
    let calls = 0;
    const { page } = await setup(
      {},
      {
        // The first token is already expired: the server closes with 4001.
        getToken: async () => (++calls === 1 ? token(SECRET, "ann", -60) : token(SECRET, "ann")),
      },
    );
    await page.evaluate(() => window.sub("all", "todos:*"));
    await until(page, () => window.client.state === "connected" && window.log.subs.all.ready);
    const log = await pageLog(page);
    assert.deepEqual(log.tokens, ["connect", "unauthorized"]);
    assert.equal(log.retries[0].code, 4001);
    assert.ok(log.retries[0].delay >= 100, "reconnected without backoff");
    assert.deepEqual(log.states.map((s) => s.s), ["connecting", "reconnecting", "connected"]);
  });

  test("server down: attempts are spread with jitter and stay within maxDelay; the client comes back", async () => {
    const options = { minDelay: 200, maxDelay: 1000, pingInterval: 5000, pongTimeout: 3000 };
    const { server, proxy, page } = await setup({}, { options });
    await page.evaluate(() => window.sub("all", "todos:*"));
    await until(page, () => window.log.subs.all.ready);
    const firstAttempt = proxy.attempts.length;
    await server.stop({ signal: "SIGKILL" });
    await until(page, () => window.log.retries.length >= 10, undefined, 30000);
    const log = await pageLog(page);
    const retries = log.retries.slice(0, 10);
    retries.forEach((r, i) => {
      const upper = Math.min(1000, 200 * 2 ** r.attempt);
      assert.equal(r.attempt, i + 1);
      assert.ok(r.delay >= 200 && r.delay <= upper, `attempt ${r.attempt}: delay ${r.delay} outside [200, ${upper}]`);
    });
    const capped = retries.slice(2).map((r) => r.delay); // attempts 3.. may use the whole [200, 1000] range
    assert.ok(Math.max(...capped) - Math.min(...capped) > 100, `no jitter: ${capped}`);
    assert.ok(new Set(retries.map((r) => Math.round(r.delay))).size >= 8, "delays repeat: no jitter");
    // The connection attempts the proxy saw follow those delays.
    const seen = proxy.attempts.slice(firstAttempt);
    assert.ok(seen.length >= 9, `proxy saw ${seen.length} attempts`);
    for (let i = 1; i < Math.min(seen.length, 10); i++) {
      const gap = seen[i] - seen[i - 1];
      assert.ok(gap >= 150 && gap <= 1500, `gap ${gap} ms between attempts ${i} and ${i + 1}`);
    }
    // The server comes back (new port, same database): the client reconnects by
    // itself. The page's origin is the first server's, so allow it explicitly.
    const again = await startServer({ env: { ...server.env, TIDINGS_ALLOWED_ORIGINS: server.url }, dataDir: server.dir });
    cleanups.push(() => again.stop());
    proxy.setTarget(again.url);
    await until(page, () => window.client.state === "connected", undefined, 15000).catch(async (e) => {
      throw new Error(`${e.message}\n${JSON.stringify(await pageLog(page))}\n${again.output}`);
    });
    await addTodos(again, "ann", ["after-restart"]);
    await until(page, () => window.log.subs.all.events.some((e) => e.title === "after-restart"));
  });
});
