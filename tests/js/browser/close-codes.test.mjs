// Close-code handling in Chromium, against a scripted fake server for the
// codes the real server cannot be made to send on demand.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { missingPrereqs, suiteOptions, launch, clientPage, until, pageLog } from "../support/browser.mjs";
import { startFakeServer } from "../support/fake-server.mjs";

const missing = missingPrereqs({ needServer: false });

describe("close codes in Chromium (scripted server)", suiteOptions(missing), () => {
  let browser;
  const cleanups = [];
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (browser) await browser.close();
  });

  async function setup(onConnection, options = {}) {
    const fake = await startFakeServer(onConnection);
    cleanups.push(() => fake.close());
    let n = 0;
    const page = await clientPage(browser, fake.url, {
      wsUrl: fake.wsUrl,
      options: { minDelay: 100, maxDelay: 300, ...options },
      getToken: async (reason) => `token-${++n}-${reason}`,
    });
    cleanups.push(() => page.context().close());
    return { fake, page };
  }

  for (const [code, name] of [
    [4003, "forbidden"],
    [4400, "protocol_misuse"],
    [1009, "message_too_big"],
  ]) {
    test(`${code} stops the client and reports closed`, async () => {
      const { fake, page } = await setup(async (conn) => {
        await conn.welcome();
        await conn.next("subscribe");
        conn.ws.close(code, "bye");
      });
      await page.evaluate(() => window.sub("a", "todos:*"));
      await until(page, () => window.client.state === "closed");
      const log = await pageLog(page);
      assert.deepEqual(log.states.map((s) => [s.s, s.code]), [["connecting", null], ["connected", null], ["closed", code]]);
      assert.equal(log.errors.at(-1).code, name);
      assert.deepEqual(log.retries, []);
      assert.equal(log.subs.a.error, "closed", "pending subscription not rejected");
      // Three times maxDelay later: still no second connection.
      await new Promise((r) => setTimeout(r, 900));
      assert.equal(fake.connections.length, 1);
    });
  }

  test("4001 on a live connection: fresh token, then reconnect and resume", async () => {
    const { fake, page } = await setup(async (conn) => {
      await conn.welcome();
      const sub = await conn.next("subscribe");
      conn.send({ type: "subscribed", id: sub.id, pattern: sub.pattern, cursor: "e:5", ...(sub.since ? { recovered: true } : {}), ref: sub.ref });
      if (conn.n === 1) {
        conn.send({ type: "event", subs: [sub.id], cursor: "e:6", topic: "todos:1", collection: "todos", key: "1", action: "create", record: { id: 1, title: "x" }, changes: null, ts: "t" });
        conn.ws.close(4001, "token expired");
      }
    });
    await page.evaluate(() => window.sub("a", "todos:*"));
    await until(page, () => window.client.state === "connected" && window.log.tokens.length === 2 && window.log.states.length === 4);
    const log = await pageLog(page);
    assert.deepEqual(log.tokens, ["connect", "unauthorized"]);
    assert.equal(fake.connections.length, 2);
    const [, second] = fake.connections;
    assert.equal(second.frames[0].type, "auth");
    assert.equal(second.frames[0].token, "token-2-unauthorized");
    const resub = second.frames.find((f) => f.type === "subscribe");
    assert.equal(resub.since, "e:6");
    assert.ok(log.retries[0].delay >= 100);
  });

  test("4029 waits at least 30 s before the next attempt", async () => {
    const { fake, page } = await setup(async (conn) => {
      await conn.welcome();
      conn.ws.close(4029, "too many");
    });
    await until(page, () => window.log.retries.length === 1);
    const log = await pageLog(page);
    assert.equal(log.retries[0].code, 4029);
    assert.ok(log.retries[0].delay >= 30000, `delay ${log.retries[0].delay}`);
    await page.evaluate(() => window.dispatchEvent(new Event("online")));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(fake.connections.length, 1, "reconnected before 30 s");
  });

  test("a silent server is detected by ping and replaced", async () => {
    const { fake, page } = await setup(
      async (conn) => {
        await conn.welcome();
        if (conn.n > 1) {
          // The second server answers pings.
          for (;;) {
            const p = await conn.next("ping", 60000);
            conn.send({ type: "pong", ref: p.ref });
          }
        }
        // The first one swallows everything.
      },
      { pingInterval: 500, pongTimeout: 500 },
    );
    await until(page, () => window.log.retries.length >= 1 && window.client.state === "connected", undefined, 10000);
    assert.equal(fake.connections.length, 2);
    assert.ok(fake.connections[0].frames.some((f) => f.type === "ping"), "no ping on the silent connection");
    // The second connection, which answers, is kept across several pings.
    const pings = () => fake.connections[1].frames.filter((f) => f.type === "ping").length;
    const deadline = Date.now() + 10000;
    while (pings() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(pings() >= 3, `only ${pings()} pings on the live connection`);
    assert.equal(fake.connections.length, 2);
    assert.equal((await pageLog(page)).retries.length, 1);
  });
});
