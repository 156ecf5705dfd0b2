#!/usr/bin/env node
// DEVELOPMENT STAND-IN, NOT THE SERVER UNDER TEST.
//
// A small in-memory imitation of the tidings binary (same environment
// variables, same "listening on" line, the wire protocol and the demo REST API
// of protocol.md) so that the browser tests can be developed and debugged
// without building the Rust server. The browser tests run against the real
// binary (TIDINGS_BIN, default target/debug/tidings); point TIDINGS_BIN at this
// file only to check the tests themselves.
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import { signJwt, verifyJwt } from "./jwt.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const env = process.env;
const secret = env.TIDINGS_JWT_SECRET || crypto.randomBytes(16).toString("hex");
const demo = !env.TIDINGS_JWT_SECRET;
const replayCap = Number(env.TIDINGS_REPLAY_CAP || 1000);
const seconds = (v, d) => (v ? Number(String(v).replace(/s$/, "")) : d);
const refreshNotice = seconds(env.TIDINGS_REFRESH_NOTICE, 30);
const expiryGrace = seconds(env.TIDINGS_EXPIRY_GRACE, 10);
const epoch = crypto.randomBytes(4).toString("hex");

const log = []; // { seq, ...event fields }
const todos = new Map();
let nextId = 1;
const conns = new Set();

function globToRe(g) {
  let re = "";
  for (const ch of g) re += ch === "*" ? ".*" : ch === "?" ? "." : /[\w-]/.test(ch) ? ch : `\\${ch}`;
  return new RegExp(`^${re}$`);
}
function matcher(pattern) {
  if (pattern.length > 256 || !/^[\w*?\-]+(:[^:\x00-\x1f]+)?$/.test(pattern)) return null;
  const [c, k = "*"] = pattern.split(":");
  const cr = globToRe(c);
  const kr = globToRe(k);
  return (e) => cr.test(e.collection) && (e.key === null || kr.test(e.key));
}

function frameOf(e, subs) {
  const { seq, ...rest } = e;
  return JSON.stringify({ type: "event", subs, cursor: `${epoch}:${seq}`, ...rest });
}

function append(e) {
  const entry = { seq: log.length + 1, ts: new Date().toISOString(), ...e };
  log.push(entry);
  for (const c of conns) {
    const ids = [...c.subs].filter(([, m]) => m(entry)).map(([id]) => id);
    if (ids.length) c.ws.send(frameOf(entry, ids));
  }
  return entry;
}

function claimsOf(token) {
  try {
    return verifyJwt(token, secret);
  } catch {
    return null;
  }
}

function bearer(req) {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization || "");
  return m ? claimsOf(m[1]) : null;
}

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "content-type": type });
  res.end(body === undefined ? "" : type === "application/json" ? JSON.stringify(body) : body);
}

async function readJson(req) {
  let s = "";
  for await (const chunk of req) s += chunk;
  return s ? JSON.parse(s) : {};
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  try {
    if (req.method === "GET" && url.pathname === "/") return send(res, 200, fs.readFileSync(path.join(root, "static/index.html")), "text/html; charset=utf-8");
    if (req.method === "GET" && url.pathname === "/realtime/client.js")
      return send(res, 200, fs.readFileSync(path.join(root, "static/realtime-client.js")), "text/javascript; charset=utf-8");
    if (req.method === "GET" && url.pathname === "/healthz") return send(res, 200, "ok", "text/plain");
    if (req.method === "POST" && url.pathname === "/demo/token") {
      if (!demo) return send(res, 404, { error: "demo tokens are off" });
      const { sub } = await readJson(req);
      return send(res, 200, { token: signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, secret), expires_in: 3600 });
    }
    const m = /^\/api\/todos(?:\/(\d+))?$/.exec(url.pathname);
    if (m) {
      const who = bearer(req);
      if (!who) return send(res, 401, { error: "unauthorized" });
      const id = m[1];
      if (!id && req.method === "GET") return send(res, 200, [...todos.values()]);
      if (!id && req.method === "POST") {
        const { title } = await readJson(req);
        const t = { id: nextId++, title, done: false, owner_id: who.sub, created_at: new Date().toISOString() };
        todos.set(t.id, t);
        append({ topic: `todos:${t.id}`, collection: "todos", key: String(t.id), action: "create", record: t, changes: null });
        return send(res, 201, t);
      }
      const t = todos.get(Number(id));
      if (!t) return send(res, 404, { error: "not found" });
      if (req.method === "GET") return send(res, 200, t);
      if (t.owner_id !== who.sub) return send(res, 403, { error: "forbidden" });
      if (req.method === "PATCH") {
        const body = await readJson(req);
        const changes = Object.keys(body).filter((k) => k === "title" || k === "done");
        for (const k of changes) t[k] = body[k];
        append({ topic: `todos:${t.id}`, collection: "todos", key: String(t.id), action: "update", record: t, changes });
        return send(res, 200, t);
      }
      if (req.method === "DELETE") {
        todos.delete(t.id);
        append({ topic: `todos:${t.id}`, collection: "todos", key: String(t.id), action: "delete", record: { id: t.id }, changes: null });
        return send(res, 204);
      }
    }
    send(res, 404, { error: "not found" });
  } catch (e) {
    send(res, 500, { error: String(e) });
  }
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
server.on("upgrade", (req, socket, head) => {
  if (new URL(req.url, "http://x").pathname !== "/realtime/subscribe") return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws));
});

function onConnection(ws) {
  const c = { ws, subs: new Map(), claims: null, timers: [] };
  const out = (f) => ws.readyState === 1 && ws.send(JSON.stringify(f));
  const clearTimers = () => c.timers.splice(0).forEach(clearTimeout);
  const arm = () => {
    clearTimers();
    if (!c.claims || !c.claims.exp) return;
    const left = c.claims.exp * 1000 - Date.now();
    c.timers.push(setTimeout(() => out({ type: "refresh_required", expires_in: Math.max(0, Math.floor((c.claims.exp * 1000 - Date.now()) / 1000)) }), Math.max(0, left - refreshNotice * 1000)));
    c.timers.push(setTimeout(() => ws.close(4001, "token expired"), left + expiryGrace * 1000));
  };
  const authTimer = setTimeout(() => ws.close(4001, "auth timeout"), 10000);
  ws.on("close", () => {
    clearTimers();
    clearTimeout(authTimer);
    conns.delete(c);
  });
  ws.on("message", (data) => {
    let f;
    try {
      f = JSON.parse(String(data));
    } catch {
      return out({ type: "error", code: "bad_request", message: "not JSON" });
    }
    const ref = f.ref;
    const expiresIn = (cl) => (cl && cl.exp ? Math.max(0, cl.exp - Math.floor(Date.now() / 1000)) : null);
    if (!c.welcomed) {
      if (f.type !== "auth") return ws.close(4001, "auth first");
      clearTimeout(authTimer);
      const claims = f.token === null ? { sub: null } : claimsOf(f.token);
      if (!claims) {
        out({ type: "error", ref, code: "unauthorized", message: "bad token" });
        return ws.close(4001, "unauthorized");
      }
      c.claims = claims;
      c.welcomed = true;
      conns.add(c);
      out({ type: "welcome", connection_id: crypto.randomUUID(), user_id: claims.sub ?? null, expires_in: expiresIn(claims), protocol: 1, ref });
      return arm();
    }
    switch (f.type) {
      case "auth": {
        const claims = claimsOf(f.token);
        if (!claims) return out({ type: "error", ref, code: "unauthorized", message: "bad token" });
        if (claims.sub !== c.claims.sub) return out({ type: "error", ref, code: "auth_mismatch", message: "other sub" });
        c.claims = claims;
        arm();
        return out({ type: "refreshed", expires_in: expiresIn(claims), ref });
      }
      case "subscribe": {
        const m = matcher(f.pattern);
        if (!m) return out({ type: "error", ref, id: f.id, code: "invalid_pattern", message: "invalid pattern" });
        const head = `${epoch}:${log.length}`;
        if (f.since == null) {
          c.subs.set(f.id, m);
          return out({ type: "subscribed", id: f.id, pattern: f.pattern, cursor: head, ref });
        }
        const i = String(f.since).lastIndexOf(":");
        const ep = String(f.since).slice(0, i);
        const seq = Number(String(f.since).slice(i + 1));
        let reason = null;
        let replay = [];
        if (ep !== epoch) reason = "epoch_changed";
        else if (!(seq <= log.length)) reason = "unknown_position";
        else {
          replay = log.slice(seq).filter(m);
          if (replay.length > replayCap) reason = "too_many";
        }
        c.subs.set(f.id, m);
        if (reason) return out({ type: "subscribed", id: f.id, pattern: f.pattern, cursor: head, recovered: false, reason, ref });
        out({ type: "subscribed", id: f.id, pattern: f.pattern, cursor: head, recovered: true, ref });
        for (const e of replay) ws.send(frameOf(e, [f.id]));
        return;
      }
      case "unsubscribe":
        if (!c.subs.delete(f.id)) return out({ type: "error", ref, id: f.id, code: "not_found", message: "no such subscription" });
        return out({ type: "unsubscribed", id: f.id, ref });
      case "ping":
        return out({ type: "pong", ref });
      case "publish": {
        const [collection, key = null] = String(f.topic).split(":");
        const e = append({ topic: f.topic, collection, key, action: "broadcast", event: f.event, data: f.data ?? null });
        return out({ type: "published", cursor: `${epoch}:${e.seq}`, ref });
      }
      default:
        return out({ type: "error", ref, code: "bad_request", message: "unknown frame" });
    }
  });
}

const [host, port] = (env.TIDINGS_BIND || "127.0.0.1:0").split(":");
server.listen(Number(port), host, () => {
  process.stdout.write(`mock-tidings listening on http://${host}:${server.address().port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    for (const c of conns) c.ws.close(1001, "going away");
    server.close();
    setTimeout(() => process.exit(0), 100).unref();
  });
}
