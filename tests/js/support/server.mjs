// Starts the tidings binary for a test: free port, throw-away SQLite file,
// URL parsed from its "listening on http://..." line.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const testsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The server binary: $TIDINGS_BIN (relative paths are relative to tests/js), default ../../target/debug/tidings. */
export function serverBin() {
  return path.resolve(testsDir, process.env.TIDINGS_BIN || "../../target/debug/tidings");
}

/**
 * Starts the server. `env` adds TIDINGS_* settings; inherited TIDINGS_* are
 * dropped so a developer's shell does not change the test.
 */
export async function startServer({ env = {}, dataDir = null, timeoutMs = 60000 } = {}) {
  const dir = dataDir || fs.mkdtempSync(path.join(os.tmpdir(), "tidings-browser-"));
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TIDINGS_")) childEnv[k] = v;
  Object.assign(childEnv, {
    TIDINGS_BIND: "127.0.0.1:0",
    TIDINGS_DATABASE_URL: `sqlite:${path.join(dir, "tidings.db")}`,
    RUST_LOG: process.env.RUST_LOG || "warn",
    ...env,
  });
  const bin = serverBin();
  const proc = spawn(bin, [], { env: childEnv, cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk) => {
    output = (output + chunk).slice(-20000);
  };
  proc.stderr.on("data", keep);
  const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`${bin} printed no "listening on" line within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    proc.stdout.on("data", (chunk) => {
      keep(chunk);
      buf += chunk;
      const m = /listening on (http:\/\/[^\s]+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ""));
      }
    });
    proc.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${e.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
  // The server embeds static/realtime-client.js at build time: make sure the
  // browser tests exercise the client in this work tree, not a stale copy.
  const served = await fetch(`${url}/realtime/client.js`, { signal: AbortSignal.timeout(10000) }).then((r) => r.text());
  const onDisk = fs.readFileSync(path.resolve(testsDir, "../../static/realtime-client.js"), "utf8");
  if (served !== onDisk) {
    proc.kill("SIGKILL");
    throw new Error(`${bin} serves a /realtime/client.js that differs from static/realtime-client.js: rebuild the server (cargo build)`);
  }
  return {
    url,
    dir,
    proc,
    env,
    get output() {
      return output;
    },
    /** Stops the server: SIGTERM, then SIGKILL after `graceMs`. */
    async stop({ signal = "SIGTERM", graceMs = 12000 } = {}) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Calls the demo REST API. Returns { status, body }. */
export async function api(baseUrl, token, method, pathname, body) {
  const res = await fetch(baseUrl + pathname, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}
