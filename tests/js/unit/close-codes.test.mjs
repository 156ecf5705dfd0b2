import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, flush, ev } from "../support/fakes.mjs";

function tokenSource() {
  const calls = [];
  let n = 0;
  const fn = async (ctx) => {
    calls.push(ctx.reason);
    return `tok${++n}`;
  };
  return { fn, calls };
}

test("auth is the first frame and carries the token from the token function", async () => {
  const t = tokenSource();
  const h = harness({ token: t.fn });
  await h.connect();
  assert.deepEqual(t.calls, ["connect"]);
  assert.deepEqual(h.sock.sent[0], { type: "auth", token: "tok1", ref: h.sock.sent[0].ref });
  assert.deepEqual(h.states, ["connecting", "connected"]);
});

test("a null token authenticates anonymously", async () => {
  const h = harness({ token: null });
  await h.connect();
  assert.equal(h.sock.sent[0].token, null);
});

test("4001 asks the token function for a fresh token before reconnecting, with backoff", async () => {
  const t = tokenSource();
  const h = harness({ token: t.fn, minDelay: 100, maxDelay: 5000, random: () => 1 });
  const sub = h.client.subscribe("todos:*", () => {});
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:9" }));
  h.sock.serverClose(4001, "token expired");
  await flush();
  assert.equal(h.sockets.length, 1, "no immediate reconnect");
  assert.equal(h.client.state, "reconnecting");
  // A dead token over and over: every attempt waits longer, never a tight loop.
  const delays = [];
  for (let i = 0; i < 5; i++) {
    delays.push(h.retries.at(-1).delay);
    await h.clock.tick(h.retries.at(-1).delay);
    await flush();
    h.sock.open();
    assert.equal(h.sock.sent[0].token, `tok${i + 2}`);
    h.sock.serverClose(4001);
    await flush();
  }
  assert.deepEqual(delays, [200, 400, 800, 1600, 3200]);
  assert.deepEqual(t.calls, ["connect", "unauthorized", "unauthorized", "unauthorized", "unauthorized", "unauthorized"]);
  // A good token at last: the subscription resumes.
  await h.clock.tick(h.retries.at(-1).delay);
  await h.connect();
  assert.equal(h.sock.last("subscribe").since, "e1:9");
  assert.equal(h.sock.last("subscribe").id, sub.id);
  assert.equal(t.calls.at(-1), "unauthorized");
});

test("4001 with a fixed token stops: there is no other token to try", async () => {
  const h = harness({ token: "static" });
  await h.connect();
  h.sock.serverClose(4001);
  await h.clock.tick(120000);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.client.state, "closed");
  assert.equal(h.errors.at(-1).code, "unauthorized");
});

test("a token function that throws is reported and retried with backoff", async () => {
  let fail = true;
  const h = harness({
    token: async () => {
      if (fail) throw new Error("auth server down");
      return "ok";
    },
    minDelay: 100,
    random: () => 0,
  });
  await flush();
  assert.equal(h.sockets.length, 0);
  assert.equal(h.errors.at(-1).code, "token_error");
  assert.equal(h.client.state, "reconnecting");
  fail = false;
  await h.clock.tick(100);
  await h.connect();
  assert.equal(h.client.state, "connected");
});

for (const [code, name] of [
  [4003, "forbidden"],
  [4400, "protocol_misuse"],
  [1009, "message_too_big"],
]) {
  test(`${code} stops the client and reports closed with the reason`, async () => {
    const h = harness();
    const live = h.client.subscribe("todos:*", () => {});
    await h.connect();
    h.ackSubscribes();
    const pending = h.client.subscribe("notes:*", () => {});
    const pub = h.client.publish("chat:lobby", "x", {}).then(() => null, (e) => e);
    await flush();
    h.sock.serverClose(code, "go away");
    await h.clock.tick(10 * 60 * 1000);
    assert.equal(h.sockets.length, 1, "must not reconnect");
    assert.equal(h.client.state, "closed");
    assert.deepEqual(h.stateInfos.at(-1).code, code);
    assert.equal(h.stateInfos.at(-1).reason, "go away");
    assert.equal(h.errors.at(-1).code, name);
    assert.equal(h.errors.at(-1).closeCode, code);
    await assert.rejects(pending.ready, (e) => e.code === "closed" && e.closeCode === code);
    // It was sent: the server may or may not have applied it.
    assert.equal((await pub).code, "disconnected");
    assert.equal(live.active, false);
    await assert.rejects(h.client.publish("a", "b", 1), (e) => e.code === "closed");
    await assert.rejects(h.client.subscribe("a", () => {}).ready, (e) => e.code === "closed");
  });
}

test("1000 from the server closes without reconnecting", async () => {
  const h = harness();
  await h.connect();
  h.sock.serverClose(1000);
  await h.clock.tick(60000);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.client.state, "closed");
});

test("4029 waits at least 30 s, even when the page comes back online", async () => {
  const h = harness({ minDelay: 100, maxDelay: 1000, random: () => 0 });
  await h.connect();
  h.sock.serverClose(4029, "too many connections");
  await flush();
  assert.ok(h.retries.at(-1).delay >= 30000);
  h.win.dispatch("online");
  h.doc.dispatch("visibilitychange");
  await h.clock.tick(29999);
  assert.equal(h.sockets.length, 1, "reconnected before 30 s");
  await h.clock.tick(1);
  assert.equal(h.sockets.length, 2);
});

for (const code of [1001, 1012, 4008, 4010, 1006, 1011]) {
  test(`${code} reconnects with jitter and resumes`, async () => {
    const h = harness({ minDelay: 100, random: () => 0.5 });
    const got = [];
    const sub = h.client.subscribe("todos:*", (e) => got.push(e.cursor));
    await h.connect();
    h.ackSubscribes(() => ({ cursor: "e1:0" }));
    h.sock.recv(ev([sub.id], 1));
    h.sock.serverClose(code);
    await flush();
    assert.equal(h.client.state, "reconnecting");
    assert.equal(h.retries.at(-1).delay, 150);
    await h.clock.tick(150);
    await h.connect();
    assert.equal(h.sock.last("subscribe").since, "e1:1");
    assert.equal(h.client.state, "connected");
  });
}

test("refresh_required fetches a new token and sends auth on the same connection", async () => {
  const t = tokenSource();
  const refreshed = [];
  const h = harness({ token: t.fn });
  h.client.on("refreshed", (f) => refreshed.push(f));
  const sub = h.client.subscribe("todos:*", () => {});
  await h.connect({ expires_in: 5 });
  h.ackSubscribes();
  h.sock.recv({ type: "refresh_required", expires_in: 5 });
  await flush();
  assert.deepEqual(t.calls, ["connect", "refresh"]);
  const auth = h.sock.frames("auth");
  assert.equal(auth.length, 2);
  assert.equal(auth[1].token, "tok2");
  h.sock.recv({ type: "refreshed", ref: auth[1].ref, expires_in: 3600 });
  assert.equal(refreshed.length, 1);
  assert.equal(h.sockets.length, 1, "no reconnect");
  assert.equal(h.client.state, "connected");
  assert.equal(sub.active, true);
  // An invalid new token is reported; the connection stays.
  h.sock.recv({ type: "refresh_required", expires_in: 1 });
  await flush();
  const a3 = h.sock.frames("auth")[2];
  h.sock.recv({ type: "error", ref: a3.ref, code: "unauthorized", message: "bad token" });
  assert.equal(h.errors.at(-1).code, "unauthorized");
  assert.equal(h.client.state, "connected");
});

test("a silent connection is detected with ping and replaced", async () => {
  const h = harness({ pingInterval: 10000, pongTimeout: 5000, minDelay: 100, random: () => 0 });
  const sub = h.client.subscribe("todos:*", () => {});
  await h.connect();
  h.ackSubscribes(() => ({ cursor: "e1:3" }));
  // Traffic keeps it quiet.
  await h.clock.tick(9000);
  h.sock.recv(ev([sub.id], 4));
  await h.clock.tick(9000);
  assert.equal(h.sock.frames("ping").length, 0);
  // Idle: a ping, answered by pong.
  await h.clock.tick(1001);
  assert.equal(h.sock.frames("ping").length, 1);
  h.sock.recv({ type: "pong", ref: h.sock.last("ping").ref });
  await h.clock.tick(6000);
  assert.equal(h.sockets.length, 1);
  // Idle again and no answer: dead, replaced.
  await h.clock.tick(4000);
  assert.equal(h.sock.frames("ping").length, 2);
  const dead = h.sock;
  await h.clock.tick(5000);
  assert.ok(dead.closedByClient, "dead socket closed");
  assert.equal(h.client.state, "reconnecting");
  await h.clock.tick(100);
  await h.connect();
  assert.equal(h.sockets.length, 2);
  assert.equal(h.sock.last("subscribe").since, "e1:4");
});

test("a handshake that never completes times out and is retried", async () => {
  const h = harness({ connectTimeout: 3000, minDelay: 100, random: () => 0 });
  await flush();
  h.sock.open(); // auth sent, welcome never comes
  await h.clock.tick(2999);
  assert.equal(h.client.state, "connecting");
  await h.clock.tick(1);
  assert.equal(h.client.state, "reconnecting");
  await h.clock.tick(100);
  assert.equal(h.sockets.length, 2);
});

test("a token function that never answers is abandoned after connectTimeout", async () => {
  let calls = 0;
  const h = harness({
    token: () => (++calls === 1 ? new Promise(() => {}) : "ok"),
    connectTimeout: 4000,
    minDelay: 100,
    random: () => 0,
  });
  await h.clock.tick(3999);
  assert.equal(h.client.state, "connecting");
  await h.clock.tick(1);
  assert.equal(h.errors.at(-1).code, "token_error");
  assert.equal(h.client.state, "reconnecting");
  await h.clock.tick(100);
  await h.connect();
  assert.equal(h.client.state, "connected");
  assert.equal(calls, 2);
  // The abandoned attempt's handshake timer does not hit the new connection.
  await h.clock.tick(10000);
  assert.equal(h.client.state, "connected");
});

test("close() stops everything and reports closed", async () => {
  const h = harness();
  await h.connect();
  const s = h.sock;
  h.client.close();
  assert.equal(h.client.state, "closed");
  assert.equal(s.closedByClient.code, 1000);
  await h.clock.tick(600000);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.win.listeners.get("online").size, 0, "page listeners removed");
  h.client.close(); // idempotent
  assert.equal(h.states.filter((x) => x === "closed").length, 1);
});
