// A TCP proxy between the browser and the server, so that tests can cut the
// network under a live WebSocket and bring it back.
import net from "node:net";

export async function startProxy(target = null) {
  const pairs = new Set();
  const attempts = []; // ms timestamps of every accepted connection
  const state = { target, down: false };
  const server = net.createServer((client) => {
    attempts.push(Date.now());
    if (state.down || !state.target) {
      client.destroy();
      return;
    }
    const upstream = net.connect(state.target.port, state.target.host);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = server.address().port;
  return {
    port,
    attempts,
    /** The ws:// URL of the server's WebSocket endpoint through the proxy. */
    wsUrl: (path = "/realtime/subscribe") => `ws://127.0.0.1:${port}${path}`,
    setTarget(url) {
      const u = new URL(url);
      state.target = { host: u.hostname, port: Number(u.port) };
    },
    /** Drops every live connection and refuses new ones. */
    cut() {
      state.down = true;
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
    },
    restore() {
      state.down = false;
    },
    get open() {
      return pairs.size;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
