import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, flush } from "../support/fakes.mjs";

test("a presence subscription tracks its listing, joins and leaves, again after a reconnect", async () => {
  const h = harness({ random: () => 0 });
  const seen = [];
  const sub = h.client.subscribe("chat:lobby", () => {}, { onPresence: (users, frame) => seen.push([users, frame.type]) });
  const plain = h.client.subscribe("todos:*", () => {});
  await h.connect();
  const [f, g] = h.sock.frames("subscribe");
  assert.equal(f.presence, true);
  assert.equal(g.presence, undefined, "only asked for where wanted");
  h.ackSubscribes();
  assert.equal(sub.presence, null, "nothing before the listing");
  h.sock.recv({ type: "presence", id: f.id, topic: "chat:lobby", users: [{ user_id: "u1", connections: 1 }, { user_id: "ann", connections: 2 }], connections: 3 });
  h.sock.recv({ type: "join", id: f.id, topic: "chat:lobby", user_id: "bob" });
  h.sock.recv({ type: "leave", id: f.id, topic: "chat:lobby", user_id: "ann" });
  h.sock.recv({ type: "join", id: g.id, topic: "todos:*", user_id: "zed" }); // not a presence subscription
  await flush();
  assert.deepEqual(seen, [
    [["ann", "u1"], "presence"],
    [["ann", "bob", "u1"], "join"],
    [["bob", "u1"], "leave"],
  ]);
  assert.deepEqual(sub.presence, ["bob", "u1"]);
  assert.equal(plain.presence, null);

  // Reconnect: the subscription asks again, and the new listing replaces the list.
  h.sock.serverClose(1006);
  await h.clock.tick(60_000);
  await h.connect();
  const again = h.sock.frames("subscribe").find((frame) => frame.id === f.id);
  assert.equal(again.presence, true);
  h.ackSubscribes();
  h.sock.recv({ type: "presence", id: again.id, topic: "chat:lobby", users: [{ user_id: "u1", connections: 1 }], connections: 1 });
  await flush();
  assert.deepEqual(sub.presence, ["u1"]);
  assert.equal(h.errors.length, 0);
});

test("presence() asks the server and rejects refusals and lost connections", async () => {
  const h = harness({ random: () => 0 });
  await assert.rejects(h.client.presence("chat:lobby"), (e) => e.code === "disconnected");
  await h.connect();
  const ok = h.client.presence("chat:lobby");
  const refused = h.client.presence("staff:room");
  const lost = h.client.presence("chat:other");
  await flush();
  const [a, b] = h.sock.frames("presence");
  assert.deepEqual({ ...a, ref: 0 }, { type: "presence", topic: "chat:lobby", ref: 0 });
  h.sock.recv({ type: "presence", topic: "chat:lobby", users: [], connections: 0, ref: a.ref });
  h.sock.recv({ type: "error", ref: b.ref, code: "forbidden", message: "no" });
  assert.equal((await ok).connections, 0);
  await assert.rejects(refused, (e) => e.code === "forbidden");
  h.sock.serverClose(1006);
  await assert.rejects(lost, (e) => e.code === "disconnected");
  assert.equal(h.errors.length, 0, "refusals go to the caller");
});
