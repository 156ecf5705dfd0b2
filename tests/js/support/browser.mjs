// Headless Chromium (Debian's package) driven by playwright-core, and a page
// at the server's origin that loads the client module the server serves.
import fs from "node:fs";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { serverBin } from "./server.mjs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * What is missing to run browser tests, or null. With CI=true a missing
 * prerequisite fails the tests; otherwise they are skipped.
 */
export function missingPrereqs({ needServer = true } = {}) {
  const missing = [];
  if (!fs.existsSync(CHROMIUM)) missing.push(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  if (needServer && !fs.existsSync(serverBin())) missing.push(`no server binary at ${serverBin()} (cargo build, or set TIDINGS_BIN)`);
  return missing.length ? missing.join("; ") : null;
}

/**
 * node:test options for a suite whose prerequisites may be missing: the suite
 * is skipped then, and with CI=true a test that fails is added in its place,
 * so CI cannot pass without running the browser tests.
 */
export function suiteOptions(missing) {
  if (missing && process.env.CI === "true") {
    test("browser test prerequisites (CI=true)", () => {
      throw new Error(`browser tests cannot run: ${missing}`);
    });
  }
  return { skip: missing ? `browser tests cannot run: ${missing}` : false };
}

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
}

/**
 * Opens a plain page of the server at `origin` (/healthz), imports
 * /realtime/client.js from that origin and creates `window.client` with the
 * given options. `getToken(reason)` runs in Node and supplies tokens.
 * The page keeps a log in `window.log`; `window.sub(name, pattern, options)`
 * subscribes (options: those of `subscribe`, e.g. `filter`) and records into
 * log.subs[name].
 */
export async function clientPage(browser, origin, { wsUrl, options = {}, getToken = null, blankPath = "/healthz" } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  page.consoleLines = consoleLines;
  if (getToken) await page.exposeFunction("__getToken", getToken);
  // A real response from the server (not one made up by request interception:
  // Chromium's local network access checks treat such a page as public and
  // block its connections to loopback).
  await page.goto(`${origin}${blankPath}`, { timeout: 15000 });
  await page.evaluate(
    async ({ wsUrl, options, hasToken }) => {
      const mod = await import("/realtime/client.js");
      const log = (window.log = { states: [], errors: [], retries: [], tokens: [], refreshed: 0, subs: {} });
      const opts = { ...options };
      if (hasToken) {
        opts.token = async (ctx) => {
          log.tokens.push(ctx.reason);
          return await window.__getToken(ctx.reason);
        };
      }
      const client = (window.client = new mod.RealtimeClient(wsUrl, opts));
      window.subscriptions = {};
      client.on("state", (s, info) => log.states.push({ s, code: info.code ?? null, t: Date.now() }));
      client.on("error", (e) => log.errors.push({ code: e.code, message: e.message }));
      client.on("retry", (r) => log.retries.push({ attempt: r.attempt, delay: r.delay, code: r.code, t: Date.now() }));
      client.on("refreshed", () => log.refreshed++);
      window.sub = (name, pattern, extra = {}) => {
        const rec = (log.subs[name] = { events: [], resyncs: [], ready: null, error: null });
        const s = client.subscribe(
          pattern,
          (e) =>
            rec.events.push({
              cursor: e.cursor,
              action: e.action,
              key: e.key,
              record: e.record === undefined ? undefined : e.record,
              title: e.record ? e.record.title : null,
              data: e.data ?? null,
              mutation: e.mutation ?? null,
            }),
          { ...extra, onResync: (reason) => rec.resyncs.push(reason) },
        );
        window.subscriptions[name] = s;
        s.ready.then(
          (f) => (rec.ready = f),
          (e) => (rec.error = e.code),
        );
        return s.id;
      };
    },
    { wsUrl, options, hasToken: !!getToken },
  );
  return page;
}

/** Waits until `fn(arg)` is truthy in the page; bounded. */
export function until(page, fn, arg, timeout = 15000) {
  return page.waitForFunction(fn, arg, { timeout, polling: 50 });
}

/** The page's log. */
export function pageLog(page) {
  return page.evaluate(() => window.log);
}
