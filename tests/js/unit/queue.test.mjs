import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, flush } from "../support/fakes.mjs";

const settle = (p) => p.then((v) => ({ ok: v }), (e) => ({ err: e }));

test("publish while disconnected waits, then settles with the server's reply", async () => {
  const h = harness();
  const p1 = settle(h.client.publish("chat:lobby", "typing", { user: "ann" }));
  const p2 = settle(h.client.publish("chat:lobby", "typing"));
  await flush();
  await h.connect();
  const [f1, f2] = h.sock.frames("publish");
  assert.deepEqual({ ...f1, ref: 0 }, { type: "publish", topic: "chat:lobby", event: "typing", data: { user: "ann" }, ref: 0 });
  assert.equal(f2.data, null);
  h.sock.recv({ type: "error", ref: f2.ref, code: "forbidden", message: "no" });
  h.sock.recv({ type: "published", ref: f1.ref, cursor: "e1:4" });
  assert.equal((await p1).ok.cursor, "e1:4");
  assert.equal((await p2).err.code, "forbidden");
  // Publish errors go to the caller, not to the error listeners.
  assert.equal(h.errors.length, 0);
});

test("the queue is bounded: calls beyond queueLimit fail at once with queue_full", async () => {
  const h = harness({ queueLimit: 3 });
  const a = settle(h.client.publish("t", "e", 1));
  const s = h.client.subscribe("todos:*", () => {});
  const b = settle(h.client.publish("t", "e", 2));
  const c = settle(h.client.publish("t", "e", 3));
  const s2 = h.client.subscribe("notes:*", () => {});
  assert.equal((await c).err.code, "queue_full");
  await assert.rejects(s2.ready, (e) => e.code === "queue_full");
  assert.equal(s2.active, false);
  await h.connect();
  assert.equal(h.sock.frames("publish").length, 2);
  assert.equal(h.sock.frames("subscribe").length, 1);
  for (const f of h.sock.frames("publish")) h.sock.recv({ type: "published", ref: f.ref });
  h.ackSubscribes();
  assert.ok((await a).ok && (await b).ok);
  await s.ready;
  // Connected: nothing is queued, so no limit applies.
  const many = Array.from({ length: 10 }, (_, i) => settle(h.client.publish("t", "e", i)));
  await flush();
  assert.equal(h.sock.frames("publish").length, 12);
  for (const f of h.sock.frames("publish").slice(2)) h.sock.recv({ type: "published", ref: f.ref });
  for (const r of await Promise.all(many)) assert.ok(r.ok);
});

test("live subscriptions re-sent on reconnect do not count against the queue", async () => {
  const h = harness({ queueLimit: 2, random: () => 0 });
  for (let i = 0; i < 5; i++) h.client.subscribe(`c${i}`, () => {});
  await h.connect(); // only the first two fitted in the queue
  assert.equal(h.sock.frames("subscribe").length, 2);
  h.ackSubscribes();
  h.sock.serverClose(1006);
  await flush();
  const p = settle(h.client.publish("t", "e", 1));
  const q = settle(h.client.publish("t", "e", 2));
  const r = settle(h.client.publish("t", "e", 3));
  assert.equal((await r).err.code, "queue_full");
  await h.clock.tick(500);
  await h.connect();
  assert.equal(h.sock.frames("subscribe").length, 2);
  assert.equal(h.sock.frames("publish").length, 2);
  for (const f of h.sock.frames("publish")) h.sock.recv({ type: "published", ref: f.ref });
  assert.ok((await p).ok && (await q).ok);
});

test("a publish in flight when the connection drops fails with disconnected", async () => {
  const h = harness();
  await h.connect();
  const p = settle(h.client.publish("t", "e", 1));
  await flush();
  h.sock.serverClose(1006);
  assert.equal((await p).err.code, "disconnected");
});

test("close() rejects queued calls with closed; later calls fail clearly", async () => {
  const h = harness();
  const p = settle(h.client.publish("t", "e", 1));
  const s = h.client.subscribe("todos:*", () => {});
  h.client.close();
  assert.equal((await p).err.code, "closed");
  await assert.rejects(s.ready, (e) => e.code === "closed");
  await assert.rejects(h.client.publish("t", "e", 1), (e) => e.code === "closed");
  const late = h.client.subscribe("x", () => {});
  await assert.rejects(late.ready, (e) => e.code === "closed");
  assert.equal(late.active, false);
  await flush();
  assert.equal(h.sockets.length, 0, "closed before the first attempt: no socket at all");
});

test("subscribe and on validate their arguments", () => {
  const h = harness();
  assert.throws(() => h.client.subscribe("", () => {}), TypeError);
  assert.throws(() => h.client.subscribe("todos:*"), TypeError);
  assert.throws(() => h.client.on("state"), TypeError);
  h.client.close();
});
