// A scripted WebSocket server for browser tests of behaviour the real server
// cannot easily be made to show (close codes 4003, 4400, 1009, 4029, a silent
// peer). It serves a blank page and the client module from static/.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { WebSocketServer } from "ws";
import { testsDir } from "./server.mjs";

const clientJs = path.resolve(testsDir, "../../static/realtime-client.js");

/**
 * `onConnection(conn)` is called for every WebSocket; conn.frames is what the
 * client sent, conn.next(type) waits for the next frame of a type, conn.send
 * sends a frame, conn.ws is the socket.
 */
export async function startFakeServer(onConnection) {
  const connections = [];
  const timers = new Set();
  const server = http.createServer((req, res) => {
    if (req.url === "/realtime/client.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(fs.readFileSync(clientJs));
    }
    res.writeHead(req.url === "/healthz" ? 200 : 404, { "content-type": "text/html" });
    res.end("<!doctype html><title>fake</title>");
  });
  const wss = new WebSocketServer({ server, path: "/realtime/subscribe" });
  wss.on("connection", (ws) => {
    const conn = { ws, frames: [], waiters: [], at: Date.now(), n: connections.length + 1 };
    conn.send = (f) => ws.readyState === 1 && ws.send(JSON.stringify(f));
    conn.next = (type, timeout = 10000) =>
      new Promise((resolve, reject) => {
        const have = conn.frames.find((f) => f.type === type && !f.taken);
        if (have) {
          have.taken = true;
          return resolve(have);
        }
        const t = setTimeout(() => reject(new Error(`no ${type} frame within ${timeout} ms`)), timeout);
        timers.add(t);
        conn.waiters.push({ type, resolve: (f) => (clearTimeout(t), resolve(f)) });
      });
    conn.welcome = async () => {
      const auth = await conn.next("auth");
      conn.send({ type: "welcome", connection_id: `c${conn.n}`, user_id: "ann", expires_in: null, protocol: 1, ref: auth.ref });
      return auth;
    };
    ws.on("message", (data) => {
      const f = JSON.parse(String(data));
      conn.frames.push(f);
      const i = conn.waiters.findIndex((w) => w.type === f.type);
      if (i >= 0) {
        f.taken = true;
        conn.waiters.splice(i, 1)[0].resolve(f);
      }
    });
    connections.push(conn);
    Promise.resolve(onConnection(conn)).catch((e) => {
      conn.error = e;
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    wsUrl: url.replace("http", "ws") + "/realtime/subscribe",
    connections,
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
