// tidings browser client: one dependency-free ES module.
//
// Served by the tidings server at GET /realtime/client.js. It speaks the wire
// protocol of docs/protocol.md (version 1): authenticate, subscribe to topic
// patterns, resume after drops without losing or repeating events, publish.
// See docs/client.md for the guide.

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Close codes after which the client stops for good (protocol section 7). */
const FATAL_CLOSE = new Map([
  [1009, "message_too_big"],
  [4003, "forbidden"],
  [4400, "protocol_misuse"],
]);

/** Pseudo close code used when the client itself gives up on a socket. */
const LOCAL_DROP = 1006;

const DEFAULTS = {
  token: null,
  minDelay: 500,
  maxDelay: 30000,
  stableAfter: 5000,
  pingInterval: 20000,
  pongTimeout: 10000,
  connectTimeout: 10000,
  queueLimit: 100,
  rateLimitDelay: 30000,
  requestTimeout: 15000,
};

/**
 * An error reported by the client: a server `error` frame, a fatal close, a
 * full queue, a callback that threw... `code` is a short machine-readable
 * string (the server's error code when there is one).
 */
export class RealtimeError extends Error {
  constructor(code, message, details = {}) {
    super(message || code, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = "RealtimeError";
    this.code = code;
    for (const [k, v] of Object.entries(details)) {
      if (k !== "cause") this[k] = v;
    }
  }
}

/**
 * Reconnect delay after the n-th consecutive failure (n >= 1): uniformly
 * random in [minDelay, min(maxDelay, minDelay * 2^n)] ("full jitter").
 */
export function backoffDelay(n, minDelay, maxDelay, random = Math.random) {
  const exp = Math.min(Math.max(n, 0), 52);
  const upper = Math.max(minDelay, Math.min(maxDelay, minDelay * 2 ** exp));
  return minDelay + random() * (upper - minDelay);
}

function parseCursor(cursor) {
  if (typeof cursor !== "string") return null;
  const i = cursor.lastIndexOf(":");
  if (i < 0) return null;
  const seq = cursor.slice(i + 1).replace(/^0+(?=\d)/, "");
  if (!/^\d+$/.test(seq)) return null;
  return { epoch: cursor.slice(0, i), seq };
}

/**
 * Compares two cursors "<epoch>:<seq>". Returns -1, 0 or 1, or null when they
 * cannot be compared (different epochs, or not cursors).
 */
export function compareCursors(a, b) {
  const x = parseCursor(a);
  const y = parseCursor(b);
  if (!x || !y || x.epoch !== y.epoch) return null;
  if (x.seq.length !== y.seq.length) return x.seq.length < y.seq.length ? -1 : 1;
  if (x.seq === y.seq) return 0;
  return x.seq < y.seq ? -1 : 1;
}

const noop = () => {};

/** A subscription made with RealtimeClient#subscribe. */
export class Subscription {
  constructor(client, id, pattern, onEvent, options) {
    this._client = client;
    /** Client-chosen id, sent as `id` in the subscribe frame. */
    this.id = id;
    /** The topic pattern. */
    this.pattern = pattern;
    this._onEvent = onEvent;
    this._onResync = options.onResync || null;
    this._onError = options.onError || null;
    this._cursor = options.since ?? null;
    /** The filter sent with every (re)subscribe (protocol section 3.5), or null. */
    this.filter = options.filter ?? null;
    this._onPresence = typeof options.onPresence === "function" ? options.onPresence : null;
    // Presence (protocol section 3.4): asked for with `presence: true` or an
    // onPresence callback; the user ids present, once the server's listing came.
    this._wantsPresence = Boolean(options.presence) || this._onPresence !== null;
    this._presence = null;
    // "pending": never confirmed; "active": confirmed at least once; "closed".
    this._status = "pending";
    this._sentOn = 0; // connection generation the subscribe frame went out on
    this._unsubscribed = null;
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    // `ready` may be ignored by the app: the error is also reported through
    // the client's "error" listeners, so don't let it become unhandled.
    this.ready.catch(noop);
  }

  /** Last cursor delivered (or the start position); `since` of the next resume. */
  get cursor() {
    return this._cursor;
  }

  /**
   * With presence: the user ids on the topic, sorted (null before the server's
   * first listing, or without presence).
   */
  get presence() {
    return this._presence ? [...this._presence].sort() : null;
  }

  /** True until the subscription is unsubscribed, refused or the client closes. */
  get active() {
    return this._status !== "closed";
  }

  /** Stops delivery at once; the promise settles on the server's `unsubscribed`. */
  unsubscribe() {
    if (!this._unsubscribed) this._unsubscribed = this._client._unsubscribe(this);
    return this._unsubscribed;
  }

  _end(err) {
    if (this._status === "closed") return;
    const wasPending = this._status === "pending";
    this._status = "closed";
    if (wasPending) this._rejectReady(err);
  }
}

/** The tidings WebSocket client. See docs/client.md. */
export class RealtimeClient {
  /**
   * @param {string} url  ws:// or wss:// URL of /realtime/subscribe
   * @param {object} options  see docs/client.md
   */
  constructor(url, options = {}) {
    if (typeof url !== "string" || url === "") throw new TypeError("RealtimeClient: url must be a non-empty string");
    const o = { ...DEFAULTS, ...options };
    if (!(o.minDelay > 0)) throw new RangeError("RealtimeClient: minDelay must be > 0");
    if (!(o.maxDelay >= o.minDelay)) throw new RangeError("RealtimeClient: maxDelay must be >= minDelay");
    this.url = url;
    this._opts = o;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") throw new TypeError("RealtimeClient: no WebSocket implementation available");
    const t = options.timers || {};
    this._setTimeout = t.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = t.clearTimeout || ((id) => clearTimeout(id));
    this._now = t.now || (() => Date.now());
    this._random = options.random || Math.random;

    this._listeners = new Map();
    this._state = "connecting";
    this._closed = false;
    this._everConnected = false;
    this._gen = 0; // bumps on every connection attempt
    this._ws = null;
    this._connected = false;
    this._failures = 0;
    this._holdUntil = 0; // no wake-up reconnect before this time (4029)
    this._tokenReason = "connect";
    this._ref = 0;
    this._subSeq = 0;
    this._subs = new Map(); // id -> Subscription, in creation order
    this._queue = []; // publishes waiting for a connection
    this._pending = new Map(); // String(ref) -> { kind, ... }
    this._timers = { retry: null, handshake: null, idle: null, dead: null, stable: null };
    this._lastRx = 0;
    this._refreshing = false;
    /** Server-assigned id of the current connection (from `welcome`). */
    this.connectionId = null;
    /** `sub` of the authenticated principal, or null when anonymous. */
    this.userId = null;

    this._onOnline = () => this._wake("online");
    this._onVisibility = () => {
      if (!this._document || this._document.visibilityState !== "hidden") this._wake("visible");
    };
    this._window = options.window !== undefined ? options.window : typeof window !== "undefined" ? window : null;
    this._document = options.document !== undefined ? options.document : typeof document !== "undefined" ? document : null;
    if (this._window && this._window.addEventListener) this._window.addEventListener("online", this._onOnline);
    if (this._document && this._document.addEventListener) this._document.addEventListener("visibilitychange", this._onVisibility);

    // Start on a microtask so that listeners added right after construction
    // see the first "connecting".
    Promise.resolve().then(() => this._connect());
  }

  /** Current state: "connecting" | "connected" | "reconnecting" | "closed". */
  get state() {
    return this._state;
  }

  /**
   * Adds a listener. Events: "state" (state, info), "error" (RealtimeError),
   * "retry" ({attempt, delay, code, reason}), "direct" (event frame without
   * subscription), "refreshed" (frame). Returns a function that removes it.
   */
  on(type, listener) {
    if (typeof listener !== "function") throw new TypeError("RealtimeClient.on: listener must be a function");
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /** Removes a listener added with `on`. */
  off(type, listener) {
    const set = this._listeners.get(type);
    if (set) set.delete(listener);
  }

  /**
   * Subscribes to a topic pattern. Returns a Subscription at once; its `ready`
   * promise settles with the server's `subscribed` frame or rejects with a
   * RealtimeError whose `code` is the server's error code.
   */
  subscribe(pattern, onEvent, options = {}) {
    if (typeof pattern !== "string" || pattern === "") throw new TypeError("RealtimeClient.subscribe: pattern must be a non-empty string");
    if (typeof onEvent !== "function") throw new TypeError("RealtimeClient.subscribe: onEvent must be a function");
    const filter = options && options.filter;
    if (filter !== undefined && filter !== null && (typeof filter !== "object" || Array.isArray(filter))) {
      throw new TypeError("RealtimeClient.subscribe: filter must be an object of field: condition");
    }
    const sub = new Subscription(this, `s${++this._subSeq}`, pattern, onEvent, options || {});
    if (this._closed) {
      sub._end(new RealtimeError("closed", "RealtimeClient is closed"));
      return sub;
    }
    if (!this._connected && this._queuedCount() >= this._opts.queueLimit) {
      sub._end(new RealtimeError("queue_full", `RealtimeClient queue is full (${this._opts.queueLimit} calls waiting for a connection)`));
      return sub;
    }
    this._subs.set(sub.id, sub);
    if (this._connected) this._sendSubscribe(sub);
    return sub;
  }

  /**
   * Publishes a custom event; settles on `published` or rejects with the error code.
   * `options.mutation`: a client mutation id (1-128 characters) the event carries as
   * `mutation`, so this client can recognise its own event.
   */
  publish(topic, event, data = null, options = {}) {
    if (this._closed) return Promise.reject(new RealtimeError("closed", "RealtimeClient is closed"));
    return new Promise((resolve, reject) => {
      const frame = { type: "publish", topic, event, data: data === undefined ? null : data };
      if (options && options.mutation !== undefined && options.mutation !== null) frame.mutation = String(options.mutation);
      const entry = { frame, resolve, reject };
      if (this._connected) {
        this._request(entry.frame, { kind: "publish", resolve, reject });
      } else if (this._queuedCount() >= this._opts.queueLimit) {
        reject(new RealtimeError("queue_full", `RealtimeClient queue is full (${this._opts.queueLimit} calls waiting for a connection)`));
      } else {
        this._queue.push(entry);
      }
    });
  }

  /**
   * Who is on a topic (a pattern as subscribed with presence), without
   * subscribing. Settles with the server's `presence` frame, or rejects with a
   * RealtimeError (`forbidden`, `unauthorized`, `invalid_pattern`, `disconnected`).
   */
  presence(topic) {
    if (this._closed) return Promise.reject(new RealtimeError("closed", "RealtimeClient is closed"));
    if (!this._connected) return Promise.reject(new RealtimeError("disconnected", "not connected; ask again once connected"));
    return new Promise((resolve, reject) => {
      this._request({ type: "presence", topic }, { kind: "presence", resolve, reject });
    });
  }

  /**
   * Asks the app's handler for `topic` (an RPC over the socket): sends a `request`
   * frame and settles with the `data` of the server's `reply`, or rejects with a
   * RealtimeError: the server's error code (`not_found` when no handler answers
   * requests on the topic, `internal` when the handler failed or timed out, or the
   * handler's own), `disconnected` (not connected, or the connection was lost before
   * the answer: the request may or may not have run), `timeout` (no answer within
   * `options.timeout`, default the client's `requestTimeout`, 15 s), `closed`.
   */
  request(topic, event, data = null, options = {}) {
    if (this._closed) return Promise.reject(new RealtimeError("closed", "RealtimeClient is closed"));
    if (!this._connected) return Promise.reject(new RealtimeError("disconnected", "not connected; ask again once connected"));
    const timeout = options && options.timeout !== undefined ? options.timeout : this._opts.requestTimeout;
    if (!(timeout > 0)) return Promise.reject(new RangeError("RealtimeClient.request: timeout must be > 0"));
    return new Promise((resolve, reject) => {
      const frame = { type: "request", topic, event, data: data === undefined ? null : data };
      let timer = null;
      const settle = (fn) => (value) => {
        if (timer !== null) this._clearTimeout(timer);
        timer = null;
        fn(value);
      };
      const pending = { kind: "request", resolve: settle(resolve), reject: settle(reject) };
      const ref = this._request(frame, pending);
      if (!this._pending.has(String(ref))) {
        return reject(new RealtimeError("disconnected", "the connection closed before the request was sent"));
      }
      timer = this._setTimeout(() => {
        timer = null;
        // A late answer finds nothing pending and is dropped.
        this._pending.delete(String(ref));
        reject(new RealtimeError("timeout", `no reply within ${timeout} ms`, { ref }));
      }, timeout);
    });
  }

  /** Closes the connection for good; pending calls reject with code "closed". */
  close() {
    if (this._closed) return;
    const ws = this._ws;
    this._finish(1000, "client closed", null);
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
  }

  /** Reconnects now if a retry is waiting (like coming back online). */
  reconnect() {
    this._wake("manual");
  }

  // ---- internals ---------------------------------------------------------

  _queuedCount() {
    let n = this._queue.length;
    for (const sub of this._subs.values()) if (sub._status === "pending" && sub._sentOn === 0) n++;
    return n;
  }

  _emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        const r = listener(...args);
        if (r && typeof r.then === "function") r.then(undefined, (e) => this._listenerFailed(type, e));
      } catch (e) {
        this._listenerFailed(type, e);
      }
    }
    return true;
  }

  _listenerFailed(type, e) {
    if (type === "error") {
      if (typeof console !== "undefined") console.error("RealtimeClient: an error listener threw", e);
      return;
    }
    this._emitError(new RealtimeError("callback_error", `a "${type}" listener threw: ${e && e.message ? e.message : e}`, { cause: e }));
  }

  _emitError(err) {
    if (!this._emit("error", err) && err.code === "callback_error" && typeof console !== "undefined") {
      console.error("RealtimeClient:", err.message, err.cause);
    }
  }

  _callback(fn, args, what, sub) {
    try {
      const r = fn(...args);
      if (r && typeof r.then === "function") r.then(undefined, (e) => this._callbackFailed(e, what, sub));
    } catch (e) {
      this._callbackFailed(e, what, sub);
    }
  }

  _callbackFailed(e, what, sub) {
    this._emitError(
      new RealtimeError("callback_error", `${what} callback of subscription ${sub.id} (${sub.pattern}) threw: ${e && e.message ? e.message : e}`, {
        cause: e,
        subscription: sub,
      }),
    );
  }

  _setState(state, info = {}) {
    if (this._state === state && !info.force) return;
    this._state = state;
    delete info.force;
    this._emit("state", state, info);
  }

  _timer(name, fn, ms) {
    this._clear(name);
    this._timers[name] = this._setTimeout(() => {
      this._timers[name] = null;
      fn();
    }, ms);
  }

  _clear(name) {
    if (this._timers[name] !== null) {
      this._clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  async _resolveToken(reason) {
    const t = this._opts.token;
    if (typeof t === "function") {
      const v = await t({ reason });
      return v === undefined ? null : v;
    }
    return t === undefined ? null : t;
  }

  async _connect() {
    if (this._closed) return;
    this._clear("retry");
    const gen = ++this._gen;
    this._setState(gen === 1 ? "connecting" : "reconnecting", { force: gen === 1 });
    // Bounds the whole attempt: token function, opening, and `welcome`.
    this._timer("handshake", () => this._attemptTimedOut(gen), this._opts.connectTimeout);
    let token;
    try {
      token = await this._resolveToken(this._tokenReason);
    } catch (e) {
      if (gen !== this._gen || this._closed) return;
      this._clear("handshake");
      this._emitError(new RealtimeError("token_error", `token function failed: ${e && e.message ? e.message : e}`, { cause: e }));
      this._failed(null, "token_error");
      return;
    }
    if (gen !== this._gen || this._closed) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (e) {
      this._clear("handshake");
      this._emitError(new RealtimeError("connect_error", `cannot open WebSocket: ${e && e.message ? e.message : e}`, { cause: e }));
      this._failed(null, "connect_error");
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._request({ type: "auth", token }, { kind: "auth" });
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._onMessage(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onClose(ev.code, ev.reason || "");
    };
    ws.onerror = noop; // a close event follows
  }

  _attemptTimedOut(gen) {
    if (gen !== this._gen || this._closed) return;
    if (this._ws) return this._drop(this._ws, "connect timeout");
    // Still waiting for the token function: give up on this attempt.
    this._gen++;
    this._emitError(new RealtimeError("token_error", `token function did not answer within ${this._opts.connectTimeout} ms`));
    this._failed(null, "token_error");
  }

  _send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch (e) {
      this._emitError(new RealtimeError("send_failed", `cannot send ${frame.type} frame: ${e && e.message ? e.message : e}`, { cause: e }));
      return false;
    }
  }

  /** Sends a frame with a fresh ref and remembers what to do with the reply. */
  _request(frame, pending) {
    const ref = ++this._ref;
    frame.ref = ref;
    this._pending.set(String(ref), pending);
    if (!this._send(frame)) {
      // The socket is not open after all: a close event is on its way.
      this._pending.delete(String(ref));
      if (pending.kind === "publish") this._queue.unshift({ frame, resolve: pending.resolve, reject: pending.reject });
    }
    return ref;
  }

  _takePending(ref) {
    if (ref === undefined || ref === null) return undefined;
    const key = String(ref);
    const p = this._pending.get(key);
    if (p) this._pending.delete(key);
    return p;
  }

  _sendSubscribe(sub) {
    const frame = { type: "subscribe", id: sub.id, pattern: sub.pattern };
    const resuming = sub._cursor !== null && sub._cursor !== undefined;
    if (resuming) frame.since = sub._cursor;
    if (sub.filter) frame.filter = sub.filter;
    if (sub._wantsPresence) frame.presence = true;
    sub._sentOn = this._gen;
    this._request(frame, { kind: "subscribe", sub, resuming });
  }

  _onMessage(data) {
    this._lastRx = this._now();
    if (this._timers.dead !== null) {
      this._clear("dead");
      this._timer("idle", () => this._onIdle(), this._opts.pingInterval);
    }
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      this._emitError(new RealtimeError("bad_frame", "server sent a frame that is not JSON"));
      return;
    }
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "welcome":
        return this._onWelcome(msg);
      case "event":
        return this._onEvent(msg);
      case "subscribed":
        return this._onSubscribed(msg);
      case "unsubscribed":
        return this._onUnsubscribed(msg);
      case "published": {
        const p = this._takePending(msg.ref);
        if (p && p.resolve) p.resolve(msg);
        return;
      }
      case "reply": {
        const p = this._takePending(msg.ref);
        if (p && p.kind === "request") p.resolve(msg.data === undefined ? null : msg.data);
        return;
      }
      case "presence":
        return this._onPresenceFrame(msg);
      case "join":
      case "leave":
        return this._onPresenceChange(msg);
      case "refreshed":
        this._takePending(msg.ref);
        this._emit("refreshed", msg);
        return;
      case "refresh_required":
        return void this._refresh();
      case "error":
        return this._onErrorFrame(msg);
      case "pong":
      default:
        this._takePending(msg.ref);
    }
  }

  _onWelcome(msg) {
    this._takePending(msg.ref);
    this._clear("handshake");
    this._connected = true;
    this._everConnected = true;
    this._tokenReason = "reconnect";
    this.connectionId = msg.connection_id ?? null;
    this.userId = msg.user_id ?? null;
    this._lastRx = this._now();
    this._timer("idle", () => this._onIdle(), this._opts.pingInterval);
    this._timer("stable", () => (this._failures = 0), this._opts.stableAfter);
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    const queued = this._queue;
    this._queue = [];
    for (const e of queued) this._request(e.frame, { kind: "publish", resolve: e.resolve, reject: e.reject });
    this._setState("connected", { connectionId: this.connectionId, userId: this.userId, expiresIn: msg.expires_in ?? null });
  }

  _onSubscribed(msg) {
    let p = this._takePending(msg.ref);
    if (!p && msg.id !== undefined) {
      for (const [key, q] of this._pending) {
        if (q.kind === "subscribe" && q.sub.id === msg.id) {
          this._pending.delete(key);
          p = q;
          break;
        }
      }
    }
    const sub = p ? p.sub : this._subs.get(msg.id);
    if (!sub || sub._status === "closed" || this._subs.get(sub.id) !== sub) return;
    const first = sub._status === "pending";
    sub._status = "active";
    if (msg.recovered === false) {
      if (msg.cursor !== undefined && msg.cursor !== null) sub._cursor = msg.cursor;
      if (first) sub._resolveReady(msg);
      if (sub._onResync) this._callback(sub._onResync, [msg.reason || "unknown_position", msg], "onResync", sub);
      return;
    }
    if (msg.recovered !== true) {
      // Fresh subscription (no `since`): it starts at the server's position.
      const hadPosition = sub._cursor !== null && sub._cursor !== undefined;
      if (msg.cursor !== undefined && msg.cursor !== null) sub._cursor = msg.cursor;
      if (!first && !hadPosition && sub._onResync) {
        // Re-subscribed without a position to resume from: the app must refetch.
        this._callback(sub._onResync, ["unknown_position", msg], "onResync", sub);
      }
    }
    if (first) sub._resolveReady(msg);
  }

  _onPresenceFrame(msg) {
    if (msg.ref !== undefined) {
      const p = this._takePending(msg.ref);
      if (p && p.kind === "presence") p.resolve(msg);
      return;
    }
    // The listing that starts (or, after a reconnect, restarts) a subscription.
    const sub = this._subs.get(msg.id);
    if (!sub || !sub._wantsPresence || sub._status === "closed") return;
    sub._presence = new Set((Array.isArray(msg.users) ? msg.users : []).map((u) => u.user_id));
    this._presenceChanged(sub, msg);
  }

  _onPresenceChange(msg) {
    const sub = this._subs.get(msg.id);
    if (!sub || !sub._presence || sub._status === "closed") return;
    if (msg.type === "join") sub._presence.add(msg.user_id);
    else sub._presence.delete(msg.user_id);
    this._presenceChanged(sub, msg);
  }

  _presenceChanged(sub, frame) {
    if (sub._onPresence) this._callback(sub._onPresence, [sub.presence, frame], "onPresence", sub);
  }

  _onUnsubscribed(msg) {
    const p = this._takePending(msg.ref);
    if (p && p.kind === "unsubscribe") {
      p.resolve(msg);
      return;
    }
    // Ended by the server (e.g. reason "forbidden" after a token refresh).
    const sub = this._subs.get(msg.id);
    if (!sub) return;
    this._subs.delete(sub.id);
    const code = msg.reason || "unsubscribed";
    const err = new RealtimeError(code, `subscription ${sub.id} (${sub.pattern}) ended by the server: ${code}`, { subscription: sub, frame: msg });
    sub._end(err);
    sub._unsubscribed = Promise.resolve(msg);
    if (sub._onError) this._callback(sub._onError, [err], "onError", sub);
    this._emitError(err);
  }

  _onErrorFrame(msg) {
    const code = msg.code || "unknown";
    const err = new RealtimeError(code, msg.message || code, { frame: msg, ref: msg.ref, id: msg.id });
    let p = this._takePending(msg.ref);
    if (!p && msg.id !== undefined && this._subs.has(msg.id)) p = { kind: "subscribe", sub: this._subs.get(msg.id) };
    if (!p) return this._emitError(err);
    switch (p.kind) {
      case "publish":
      case "presence":
      case "request":
        return p.reject(err);
      case "unsubscribe":
        return p.resolve(msg);
      case "subscribe": {
        const sub = p.sub;
        if (sub._status === "closed") return;
        this._subs.delete(sub.id);
        err.subscription = sub;
        sub._end(err);
        sub._status = "closed";
        sub._unsubscribed = Promise.resolve(msg);
        if (sub._onError) this._callback(sub._onError, [err], "onError", sub);
        return this._emitError(err);
      }
      default:
        return this._emitError(err);
    }
  }

  _onEvent(msg) {
    const ids = Array.isArray(msg.subs) ? msg.subs : [];
    if (ids.length === 0) {
      this._emit("direct", msg);
      return;
    }
    for (const id of ids) {
      const sub = this._subs.get(id);
      if (!sub || sub._status === "closed") continue;
      if (msg.cursor !== null && msg.cursor !== undefined) {
        if (sub._cursor !== null && sub._cursor !== undefined) {
          const cmp = compareCursors(msg.cursor, sub._cursor);
          if (cmp !== null && cmp <= 0) continue; // already delivered
        }
        sub._cursor = msg.cursor;
      }
      this._callback(sub._onEvent, [msg], "onEvent", sub);
    }
  }

  _unsubscribe(sub) {
    if (sub._status === "closed" || this._subs.get(sub.id) !== sub) {
      return Promise.resolve(null);
    }
    this._subs.delete(sub.id);
    sub._end(new RealtimeError("unsubscribed", `subscription ${sub.id} was unsubscribed before it was ready`));
    if (!this._connected || sub._sentOn !== this._gen) return Promise.resolve(null);
    return new Promise((resolve) => {
      this._request({ type: "unsubscribe", id: sub.id }, { kind: "unsubscribe", resolve });
    });
  }

  async _refresh() {
    if (typeof this._opts.token !== "function" || this._refreshing) return;
    this._refreshing = true;
    const ws = this._ws;
    let token;
    try {
      token = await this._resolveToken("refresh");
    } catch (e) {
      this._emitError(new RealtimeError("token_error", `token function failed during refresh: ${e && e.message ? e.message : e}`, { cause: e }));
      return;
    } finally {
      this._refreshing = false;
    }
    if (this._ws !== ws || !this._connected) return;
    this._request({ type: "auth", token }, { kind: "refresh" });
  }

  _onIdle() {
    if (!this._connected) return;
    const idle = this._now() - this._lastRx;
    if (idle < this._opts.pingInterval) {
      this._timer("idle", () => this._onIdle(), this._opts.pingInterval - idle);
      return;
    }
    this._probe();
  }

  /** Sends a ping; no frame at all within pongTimeout means the connection is dead. */
  _probe() {
    if (!this._connected || this._timers.dead !== null) return;
    this._clear("idle");
    const ws = this._ws;
    this._send({ type: "ping", ref: ++this._ref });
    this._timer("dead", () => this._drop(ws, "no pong"), this._opts.pongTimeout);
  }

  /** Gives up on a socket that does not answer and goes on as if it closed. */
  _drop(ws, reason) {
    if (this._ws !== ws) return;
    this._detach();
    try {
      ws.close(4000, reason);
    } catch {
      // ignore
    }
    this._afterClose(LOCAL_DROP, reason);
  }

  _detach() {
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }
    this._ws = null;
    this._connected = false;
    for (const name of ["handshake", "idle", "dead", "stable"]) this._clear(name);
    for (const p of this._pending.values()) {
      if (p.kind === "publish") p.reject(new RealtimeError("disconnected", "connection lost before the server answered; the publish may or may not have happened"));
      else if (p.kind === "unsubscribe") p.resolve(null);
      else if (p.kind === "presence") p.reject(new RealtimeError("disconnected", "connection lost before the server answered; ask again"));
      else if (p.kind === "request") p.reject(new RealtimeError("disconnected", "connection lost before the server answered; the request may or may not have run"));
    }
    this._pending.clear();
    for (const sub of this._subs.values()) sub._sentOn = 0;
  }

  _onClose(code, reason) {
    this._detach();
    this._afterClose(code, reason);
  }

  _afterClose(code, reason) {
    if (this._closed) return;
    if (code === 1000) return this._finish(code, reason || "closed by server", null);
    if (FATAL_CLOSE.has(code)) {
      const name = FATAL_CLOSE.get(code);
      return this._finish(code, reason || name, new RealtimeError(name, `connection closed with ${code}${reason ? ` (${reason})` : ""}`, { closeCode: code, reason }));
    }
    if (code === 4001) {
      if (typeof this._opts.token !== "function") {
        return this._finish(code, reason || "unauthorized", new RealtimeError("unauthorized", `connection closed with 4001${reason ? ` (${reason})` : ""} and the token option is not a function: no new token to try`, { closeCode: code, reason }));
      }
      this._tokenReason = "unauthorized";
    }
    this._failed(code, reason);
  }

  /** Counts a failure and schedules the next attempt with backoff and jitter. */
  _failed(code, reason) {
    this._failures++;
    let delay = backoffDelay(this._failures, this._opts.minDelay, this._opts.maxDelay, this._random);
    if (code === 4029) {
      delay = Math.max(delay, this._opts.rateLimitDelay);
      this._holdUntil = this._now() + delay;
    }
    const info = { code, reason, attempt: this._failures, delay };
    this._setState("reconnecting", { ...info });
    this._emit("retry", info);
    if (this._closed) return;
    this._timer("retry", () => this._connect(), delay);
  }

  _wake(why) {
    if (this._closed) return;
    if (this._connected) {
      // Back from sleep or offline: check that the connection still lives.
      this._probe();
      return;
    }
    if (this._timers.retry !== null && this._now() >= this._holdUntil) {
      this._clear("retry");
      this._connect();
    }
  }

  _finish(code, reason, err) {
    this._closed = true;
    const closedErr = new RealtimeError("closed", `RealtimeClient closed: ${reason}`, { closeCode: code, reason });
    for (const p of this._pending.values()) if (p.kind === "publish" || p.kind === "request") p.reject(closedErr);
    this._pending.clear();
    this._detach();
    this._clear("retry");
    for (const e of this._queue) e.reject(closedErr);
    this._queue = [];
    for (const sub of this._subs.values()) sub._end(closedErr);
    this._subs.clear();
    if (this._window && this._window.removeEventListener) this._window.removeEventListener("online", this._onOnline);
    if (this._document && this._document.removeEventListener) this._document.removeEventListener("visibilitychange", this._onVisibility);
    if (err) this._emitError(err);
    this._setState("closed", { code, reason, error: err });
  }
}

export default RealtimeClient;
