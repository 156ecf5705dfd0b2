import { test } from "node:test";
import assert from "node:assert/strict";
import { compareCursors } from "../../../static/realtime-client.js";
import { harness, flush, ev } from "../support/fakes.mjs";

test("compareCursors compares seq numerically within an epoch", () => {
  assert.equal(compareCursors("e:2", "e:10"), -1);
  assert.equal(compareCursors("e:10", "e:2"), 1);
  assert.equal(compareCursors("e:7", "e:7"), 0);
  assert.equal(compareCursors("e:007", "e:7"), 0);
  assert.equal(compareCursors("e:99999999999999999999", "e:99999999999999999998"), 1);
  assert.equal(compareCursors("a:1", "b:1"), null);
  assert.equal(compareCursors("x:y:5", "x:y:6"), -1);
  assert.equal(compareCursors(null, "e:1"), null);
  assert.equal(compareCursors("garbage", "e:1"), null);
});

test("subscriptions made before the connection are sent after welcome", async () => {
  const h = harness();
  const got = [];
  const sub = h.client.subscribe("todos:*", (e) => got.push(e.cursor));
  await flush();
  h.sock.open();
  assert.deepEqual(h.sock.sent.map((f) => f.type), ["auth"], "nothing but auth before welcome");
  assert.equal(h.sock.sent[0].token, "tok");
  assert.equal(h.client.state, "connecting");
  await h.connect();
  assert.equal(h.client.state, "connected");
  const f = h.sock.last("subscribe");
  assert.equal(f.pattern, "todos:*");
  assert.equal(f.id, sub.id);
  assert.equal(f.since, undefined);
  assert.ok(f.ref !== undefined);
  h.sock.recv({ type: "subscribed", id: f.id, pattern: "todos:*", cursor: "e1:5", ref: f.ref });
  const frame = await sub.ready;
  assert.equal(frame.cursor, "e1:5");
  assert.equal(sub.cursor, "e1:5", "the start position is remembered");
  h.sock.recv(ev([sub.id], 6));
  h.sock.recv(ev([sub.id], 7));
  assert.deepEqual(got, ["e1:6", "e1:7"]);
  assert.equal(sub.cursor, "e1:7");
});

test("every frame the client sends carries a ref; replies are matched by ref", async () => {
  const h = harness();
  const a = h.client.subscribe("a", () => {});
  const b = h.client.subscribe("b", () => {});
  await h.connect();
  const p = h.client.publish("chat:lobby", "typing", { user: "ann" });
  await flush();
  for (const f of h.sock.sent) assert.ok(f.ref !== undefined, `${f.type} has no ref`);
  const refs = h.sock.sent.map((f) => f.ref);
  assert.equal(new Set(refs).size, refs.length, "refs are unique");
  const [sa, sb] = h.sock.frames("subscribe");
  // Answer out of order.
  h.sock.recv({ type: "published", ref: h.sock.last("publish").ref });
  h.sock.recv({ type: "subscribed", id: sb.id, pattern: "b", cursor: "e1:2", ref: sb.ref });
  h.sock.recv({ type: "subscribed", id: sa.id, pattern: "a", cursor: "e1:1", ref: sa.ref });
  assert.equal((await a.ready).cursor, "e1:1");
  assert.equal((await b.ready).cursor, "e1:2");
  assert.equal((await p).type, "published");
});

test("resume: re-subscribes with since = last delivered cursor and drops duplicates", async () => {
  const h = harness({ random: () => 0 });
  const got = [];
  const resyncs = [];
  const sub = h.client.subscribe("todos:*", (e) => got.push(e.record.n), { onResync: (r) => resyncs.push(r) });
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:0" }));
  for (const n of [1, 2, 3]) h.sock.recv(ev([sub.id], n));
  h.sock.serverClose(1006);
  await h.clock.tick(500);
  await h.connect();
  const f = h.sock.last("subscribe");
  assert.equal(f.id, sub.id);
  assert.equal(f.since, "e1:3");
  h.sock.recv({ type: "subscribed", id: f.id, pattern: f.pattern, cursor: "e1:6", recovered: true, ref: f.ref });
  // Replay (with an overlap the server is allowed to send), then live.
  for (const n of [2, 3, 4, 5, 6, 6, 7]) h.sock.recv(ev([sub.id], n));
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(resyncs, []);
  assert.equal(sub.cursor, "e1:7");
});

test("recovered:false calls onResync once with the reason, then continues live", async () => {
  const h = harness({ random: () => 0 });
  const got = [];
  const resyncs = [];
  const sub = h.client.subscribe("todos:*", (e) => got.push(e.cursor), { onResync: (r) => resyncs.push(r) });
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:0" }));
  h.sock.recv(ev([sub.id], 1));
  h.sock.serverClose(1012);
  await h.clock.tick(500);
  await h.connect();
  const f = h.sock.last("subscribe");
  assert.equal(f.since, "e1:1");
  h.sock.recv({ type: "subscribed", id: f.id, pattern: f.pattern, cursor: "e2:40", recovered: false, reason: "epoch_changed", ref: f.ref });
  assert.deepEqual(resyncs, ["epoch_changed"]);
  assert.equal(sub.cursor, "e2:40");
  h.sock.recv(ev([sub.id], 41, { cursor: "e2:41" }));
  h.sock.recv(ev([sub.id], 40, { cursor: "e2:40" })); // not after the start position
  assert.deepEqual(got, ["e1:1", "e2:41"]);
  // And a later resume uses the new position.
  h.sock.serverClose(1006);
  await h.clock.tick(500);
  await h.connect();
  assert.equal(h.sock.last("subscribe").since, "e2:41");
  assert.deepEqual(resyncs, ["epoch_changed"]);
});

test("dedupe is per subscription; cursor-less events are never deduplicated", async () => {
  const h = harness();
  const a = [];
  const b = [];
  const direct = [];
  h.client.on("direct", (e) => direct.push(e.data));
  const sa = h.client.subscribe("todos:*", (e) => a.push(e.cursor ?? e.data));
  const sb = h.client.subscribe("todos:1", (e) => b.push(e.cursor ?? e.data));
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:0" }));
  h.sock.recv(ev([sa.id, sb.id], 1));
  // A replay for sb only repeats seq 1 (allowed by the protocol): dropped for sb.
  h.sock.recv(ev([sb.id], 1));
  h.sock.recv(ev([sa.id], 2));
  h.sock.recv(ev([sb.id], 2)); // sb had not seen 2 yet: delivered
  h.sock.recv(ev([sa.id], null, { data: "x" }));
  h.sock.recv(ev([sa.id], null, { data: "x" }));
  h.sock.recv(ev([], null, { topic: null, collection: null, key: null, action: "broadcast", event: "hi", data: "dm" }));
  h.sock.recv(ev([], null, { topic: null, collection: null, key: null, action: "broadcast", event: "hi", data: "dm" }));
  assert.deepEqual(a, ["e1:1", "e1:2", "x", "x"]);
  assert.deepEqual(b, ["e1:1", "e1:2"]);
  assert.deepEqual(direct, ["dm", "dm"]);
});

test("a callback that throws is reported through error and does not stop other callbacks", async () => {
  const h = harness();
  const good = [];
  const bad = h.client.subscribe("todos:*", () => {
    throw new Error("boom");
  });
  h.client.subscribe("todos:*", (e) => good.push(e.cursor));
  h.client.subscribe("todos:*", async () => {
    throw new Error("async boom");
  });
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:0" }));
  const ids = h.sock.frames("subscribe").map((f) => f.id);
  h.sock.recv(ev(ids, 1));
  h.sock.recv(ev(ids, 2));
  await flush();
  assert.deepEqual(good, ["e1:1", "e1:2"]);
  const cb = h.errors.filter((e) => e.code === "callback_error");
  assert.equal(cb.length, 4);
  assert.equal(cb[0].cause.message, "boom");
  assert.equal(cb[0].subscription, bad);
  assert.ok(cb.some((e) => e.cause.message === "async boom"));
  // The failing subscription still advanced: no redelivery after a resume.
  assert.equal(bad.cursor, "e1:2");
  // A state listener that throws is reported too and does not break the client.
  h.client.on("state", () => {
    throw new Error("listener boom");
  });
  h.sock.serverClose(1006);
  await flush();
  assert.ok(h.errors.some((e) => e.code === "callback_error" && e.cause.message === "listener boom"));
  assert.equal(h.client.state, "reconnecting");
});

test("unsubscribe stops delivery at once and settles on unsubscribed", async () => {
  const h = harness();
  const got = [];
  const sub = h.client.subscribe("todos:*", (e) => got.push(e.cursor));
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:0" }));
  h.sock.recv(ev([sub.id], 1));
  let settled = false;
  const p = sub.unsubscribe().then((f) => {
    settled = true;
    return f;
  });
  assert.equal(sub.active, false);
  const f = h.sock.last("unsubscribe");
  assert.equal(f.id, sub.id);
  h.sock.recv(ev([sub.id], 2)); // in flight before the server processed it
  await flush();
  assert.equal(settled, false);
  h.sock.recv({ type: "unsubscribed", id: sub.id, ref: f.ref });
  assert.equal((await p).type, "unsubscribed");
  assert.deepEqual(got, ["e1:1"]);
  assert.equal(sub.unsubscribe(), sub.unsubscribe(), "idempotent");
  // Not re-subscribed after a reconnect.
  h.sock.serverClose(1006);
  await h.clock.tick(2000);
  await h.connect();
  assert.equal(h.sock.frames("subscribe").length, 0);
});

test("unsubscribe while disconnected settles at once; ready rejects if it never got subscribed", async () => {
  const h = harness();
  const sub = h.client.subscribe("todos:*", () => {});
  assert.equal(await sub.unsubscribe(), null);
  await assert.rejects(sub.ready, (e) => e.code === "unsubscribed");
  await h.connect();
  assert.equal(h.sock.frames("subscribe").length, 0);
});

test("a subscription the server ends (reason forbidden) is reported and not resumed", async () => {
  const h = harness({ random: () => 0 });
  const errs = [];
  const sub = h.client.subscribe("notes:*", () => {}, { onError: (e) => errs.push(e.code) });
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:0" }));
  h.sock.recv({ type: "unsubscribed", id: sub.id, reason: "forbidden" });
  assert.equal(sub.active, false);
  assert.deepEqual(errs, ["forbidden"]);
  assert.ok(h.errors.some((e) => e.code === "forbidden" && e.subscription === sub));
  h.sock.serverClose(1006);
  await h.clock.tick(500);
  await h.connect();
  assert.equal(h.sock.frames("subscribe").length, 0);
});

test("subscribe error rejects ready with the code and is reported", async () => {
  const h = harness();
  const sub = h.client.subscribe("bad pattern:[", () => {});
  await h.connect();
  const f = h.sock.last("subscribe");
  h.sock.recv({ type: "error", ref: f.ref, id: f.id, code: "invalid_pattern", message: "nope" });
  await assert.rejects(sub.ready, (e) => e.code === "invalid_pattern" && e.message === "nope");
  assert.equal(sub.active, false);
  assert.ok(h.errors.some((e) => e.code === "invalid_pattern"));
  // An error frame that answers nothing is reported too.
  h.sock.recv({ type: "error", code: "rate_limited", message: "slow down" });
  assert.equal(h.errors.at(-1).code, "rate_limited");
});
