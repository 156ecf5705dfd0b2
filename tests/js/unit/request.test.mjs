import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, flush } from "../support/fakes.mjs";

test("request() sends a request frame and settles with the reply's data, matched by ref", async () => {
  const h = harness({ random: () => 0 });
  await assert.rejects(h.client.request("todos", "count"), (e) => e.code === "disconnected");
  await h.connect();
  const first = h.client.request("todos", "count", { open: true });
  const second = h.client.request("todos", "whoami");
  const refused = h.client.request("todos", "secret");
  await flush();
  const [a, b, c] = h.sock.frames("request");
  assert.deepEqual({ ...a, ref: 0 }, { type: "request", topic: "todos", event: "count", data: { open: true }, ref: 0 });
  assert.equal(b.data, null);
  // Answers may come in any order: each settles its own promise.
  h.sock.recv({ type: "reply", ref: b.ref, data: { user: "ann" } });
  h.sock.recv({ type: "reply", ref: a.ref, data: 3 });
  h.sock.recv({ type: "error", ref: c.ref, code: "forbidden", message: "no" });
  assert.equal(await first, 3);
  assert.deepEqual(await second, { user: "ann" });
  await assert.rejects(refused, (e) => e.code === "forbidden" && e.message === "no");
  assert.equal(h.errors.length, 0, "refusals go to the caller");
});

test("request() rejects on its timeout, on a lost connection and on close", async () => {
  const h = harness({ random: () => 0 });
  await h.connect();
  await assert.rejects(h.client.request("todos", "x", null, { timeout: 0 }), RangeError);
  const slow = h.client.request("todos", "slow", null, { timeout: 1000 });
  await flush();
  const [frame] = h.sock.frames("request");
  const timedOut = assert.rejects(slow, (e) => e.code === "timeout");
  await h.clock.tick(999);
  assert.equal(h.clock.pendingDelays().includes(1), true, "still waiting 1 ms before the timeout");
  await h.clock.tick(1);
  await timedOut;
  // The late answer is dropped quietly.
  h.sock.recv({ type: "reply", ref: frame.ref, data: "late" });
  await flush();
  assert.equal(h.errors.length, 0);

  const lost = h.client.request("todos", "count");
  await flush();
  h.sock.serverClose(1006);
  await assert.rejects(lost, (e) => e.code === "disconnected");

  await h.clock.tick(60_000);
  await h.connect();
  const closing = h.client.request("todos", "count");
  await flush();
  h.client.close();
  await assert.rejects(closing, (e) => e.code === "closed");
  await assert.rejects(h.client.request("todos", "count"), (e) => e.code === "closed");
});
