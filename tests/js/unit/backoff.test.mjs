import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../../../static/realtime-client.js";
import { harness, flush } from "../support/fakes.mjs";

test("backoffDelay stays in [minDelay, min(maxDelay, minDelay*2^n)]", () => {
  for (let n = 1; n <= 12; n++) {
    const upper = Math.min(30000, 500 * 2 ** n);
    assert.equal(backoffDelay(n, 500, 30000, () => 0), 500);
    assert.equal(backoffDelay(n, 500, 30000, () => 0.999999999), 500 + 0.999999999 * (upper - 500));
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(n, 500, 30000);
      assert.ok(d >= 500 && d <= upper, `n=${n} d=${d}`);
    }
  }
  // Huge n neither overflows nor exceeds the cap.
  assert.equal(backoffDelay(10_000, 500, 30000, () => 1), 30000);
  assert.equal(backoffDelay(1, 500, 500, () => 1), 500);
});

test("backoffDelay spreads uniformly (full jitter)", () => {
  const n = 6; // upper = min(30000, 32000) = 30000
  const samples = Array.from({ length: 4000 }, () => backoffDelay(n, 500, 30000));
  const buckets = [0, 0, 0, 0];
  for (const d of samples) buckets[Math.min(3, Math.floor(((d - 500) / 29500) * 4))]++;
  for (const b of buckets) assert.ok(b > 800 && b < 1200, `bucket counts ${buckets}`);
  const distinct = new Set(samples.map((d) => Math.round(d)));
  assert.ok(distinct.size > 2000, "delays are not spread");
});

test("client retries with growing, bounded delays while the server is unreachable", async () => {
  const rnd = [0.999, 0.0, 0.5, 0.999, 0.999, 0.999, 0.999, 0.999];
  let i = 0;
  const h = harness({ minDelay: 100, maxDelay: 1000, random: () => rnd[i++ % rnd.length] });
  await flush();
  for (let n = 1; n <= 8; n++) {
    assert.equal(h.sockets.length, n);
    h.sock.serverClose(1006);
    await flush();
    const r = h.retries.at(-1);
    assert.equal(r.attempt, n);
    const upper = Math.min(1000, 100 * 2 ** n);
    assert.ok(r.delay >= 100 && r.delay <= upper, `attempt ${n}: ${r.delay} not in [100, ${upper}]`);
    // Nothing happens before the delay, a new socket right at it.
    await h.clock.tick(Math.floor(r.delay) - 1);
    assert.equal(h.sockets.length, n, "reconnected too early");
    await h.clock.tick(2);
    assert.equal(h.sockets.length, n + 1, "did not reconnect after the delay");
  }
  assert.deepEqual(h.retries.map((r) => Math.round(r.delay)), [200, 100, 450, 999, 999, 999, 999, 999]);
  assert.equal(h.states[0], "connecting");
  assert.ok(h.states.slice(1).every((s) => s === "reconnecting"));
});

test("backoff resets after a stable connection, not after a short one", async () => {
  const h = harness({ minDelay: 100, maxDelay: 10000, stableAfter: 5000, random: () => 1 });
  await flush();
  for (let n = 0; n < 4; n++) {
    h.sock.serverClose(1006);
    await h.clock.tick(h.retries.at(-1).delay);
  }
  assert.equal(h.retries.at(-1).attempt, 4);
  // Connected briefly: the failure count keeps growing.
  await h.connect();
  await h.clock.tick(4000);
  h.sock.serverClose(1001);
  await flush();
  assert.equal(h.retries.at(-1).attempt, 5);
  assert.equal(h.retries.at(-1).delay, 3200);
  await h.clock.tick(3200);
  // Connected for longer than stableAfter: the next drop starts over.
  await h.connect();
  await h.clock.tick(5001);
  h.sock.serverClose(1001);
  await flush();
  assert.equal(h.retries.at(-1).attempt, 1);
  assert.equal(h.retries.at(-1).delay, 200);
});

test("coming back online or visible reconnects at once", async () => {
  const h = harness({ minDelay: 1000, maxDelay: 60000, random: () => 1 });
  await flush();
  h.sock.serverClose(1006);
  await flush();
  assert.equal(h.sockets.length, 1);
  h.win.dispatch("online");
  await flush();
  assert.equal(h.sockets.length, 2, "online did not reconnect at once");
  h.sock.serverClose(1006);
  await flush();
  h.doc.visibilityState = "hidden";
  h.doc.dispatch("visibilitychange");
  await flush();
  assert.equal(h.sockets.length, 2, "hidden must not reconnect");
  h.doc.visibilityState = "visible";
  h.doc.dispatch("visibilitychange");
  await flush();
  assert.equal(h.sockets.length, 3, "visible did not reconnect at once");
});

test("coming back visible while connected probes the connection with a ping", async () => {
  const h = harness({ pongTimeout: 3000 });
  await h.connect();
  h.doc.dispatch("visibilitychange");
  await flush();
  assert.equal(h.sock.frames("ping").length, 1);
  await h.clock.tick(3001);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.client.state, "reconnecting");
});
