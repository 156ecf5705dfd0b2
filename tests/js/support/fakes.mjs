// Test doubles for unit tests of static/realtime-client.js: a manual clock and
// an in-memory WebSocket whose "server side" the test drives by hand.
import { RealtimeClient } from "../../../static/realtime-client.js";

/** Lets every pending promise callback run (one macrotask turn). */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A manual clock: timers fire only inside tick(). */
export class FakeClock {
  constructor(start = 1_000_000) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { id, at: this.t + Math.max(0, ms || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.t;
  }

  /** Advances time by ms, firing due timers in order and flushing promises between them. */
  async tick(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      let next = null;
      for (const tm of this.timers.values()) {
        if (tm.at <= end && (!next || tm.at < next.at || (tm.at === next.at && tm.id < next.id))) next = tm;
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await flush();
  }

  /** Delays (from now) of the pending timers, sorted. */
  pendingDelays() {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }
}

/** Creates a fake WebSocket class; every instance is recorded in `sockets`. */
export function fakeSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedByClient = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("fake socket not open");
      this.sent.push(JSON.parse(data));
    }
    close(code, reason) {
      this.closedByClient = { code, reason };
      this.readyState = 3;
    }
    // ---- server side, driven by the test ----
    open() {
      this.readyState = 1;
      if (this.onopen) this.onopen({});
    }
    recv(frame) {
      if (this.onmessage) this.onmessage({ data: JSON.stringify(frame) });
    }
    serverClose(code, reason = "") {
      this.readyState = 3;
      if (this.onclose) this.onclose({ code, reason, wasClean: code !== 1006 });
    }
    frames(type) {
      return this.sent.filter((f) => f.type === type);
    }
    last(type) {
      return this.frames(type).at(-1);
    }
  }
  return { WebSocket: FakeWebSocket, sockets };
}

/** A minimal EventTarget stand-in for window/document. */
export class FakeTarget {
  constructor(props = {}) {
    Object.assign(this, props);
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type) {
    for (const fn of [...(this.listeners.get(type) || [])]) fn({ type });
  }
}

/**
 * Builds a client wired to fakes. Returns helpers to drive it:
 *   h.sock        latest fake socket
 *   h.connect()   open the latest socket, answer its auth with welcome
 *   h.states / h.errors / h.retries   what the client reported
 */
export function harness(options = {}) {
  const clock = new FakeClock();
  const { WebSocket, sockets } = fakeSockets();
  const win = new FakeTarget();
  const doc = new FakeTarget({ visibilityState: "visible" });
  const client = new RealtimeClient(options.url || "ws://test/realtime/subscribe", {
    token: "tok",
    WebSocket,
    timers: clock,
    window: win,
    document: doc,
    random: () => 0.5,
    ...options,
  });
  const h = {
    client,
    clock,
    sockets,
    win,
    doc,
    states: [],
    stateInfos: [],
    errors: [],
    retries: [],
    get sock() {
      return sockets.at(-1);
    },
    /** Opens the latest socket and answers its auth with welcome. */
    async connect(welcome = {}) {
      await flush();
      const s = sockets.at(-1);
      if (!s) throw new Error("no socket was created");
      s.open();
      const auth = s.last("auth");
      if (!auth) throw new Error("client sent no auth");
      s.recv({ type: "welcome", connection_id: `c${sockets.length}`, user_id: "u1", expires_in: null, protocol: 1, ref: auth.ref, ...welcome });
      await flush();
      return s;
    },
    /** Answers every unanswered subscribe frame on the latest socket. */
    ackSubscribes(extra = (f) => ({ cursor: f.since ?? "e1:0", ...(f.since ? { recovered: true } : {}) })) {
      const s = sockets.at(-1);
      s.acked = s.acked || new Set();
      for (const f of s.frames("subscribe")) {
        if (s.acked.has(f.ref)) continue;
        s.acked.add(f.ref);
        s.recv({ type: "subscribed", id: f.id, pattern: f.pattern, ref: f.ref, ...extra(f) });
      }
    },
  };
  client.on("state", (s, info) => {
    h.states.push(s);
    h.stateInfos.push(info);
  });
  client.on("error", (e) => h.errors.push(e));
  client.on("retry", (r) => h.retries.push(r));
  return h;
}

/** An event frame for the given subscription ids and seq. */
export function ev(subs, seq, extra = {}) {
  return {
    type: "event",
    subs,
    cursor: seq === null ? null : `e1:${seq}`,
    topic: "todos:1",
    collection: "todos",
    key: "1",
    action: "update",
    record: { id: 1, n: seq },
    changes: ["n"],
    ts: "2026-01-01T00:00:00.000Z",
    ...extra,
  };
}
