// The demo page (static/index.html, served at /) in two tabs of Chromium,
// against the real server in demo mode (it mints tokens at /demo/token).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { missingPrereqs, suiteOptions, launch } from "../support/browser.mjs";
import fs from "node:fs";
import path from "node:path";
import { startServer, api, testsDir } from "../support/server.mjs";

const missing = missingPrereqs();

describe("demo page", suiteOptions(missing), () => {
  let browser;
  let server;
  before(async () => {
    browser = await launch();
    server = await startServer(); // no TIDINGS_JWT_SECRET: demo mode
  });
  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  async function tab(name) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(e.message));
    await page.goto(`${server.url}/`, { timeout: 15000 });
    const suggested = await page.inputValue("#name");
    assert.match(suggested, /\S/, "no default name");
    if (name) await page.fill("#name", name);
    await page.click("#join");
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 15000 });
    page.problems = problems;
    return page;
  }

  const titles = (page) => page.$$eval("#todos li .title", (els) => els.map((e) => e.textContent));

  test("a todo added in one tab appears in the other; ticks and deletes sync too", async () => {
    const ann = await tab("ann");
    const bob = await tab(null); // keeps the random default name
    assert.equal(await ann.textContent("#state"), "connected");

    await ann.fill("#new-title", "buy milk");
    await ann.click("#add");
    await bob.waitForSelector('#todos li .title:text-is("buy milk")', { timeout: 10000 });
    await ann.waitForSelector('#todos li .title:text-is("buy milk")', { timeout: 10000 });

    await bob.fill("#new-title", "walk the dog");
    await bob.press("#new-title", "Enter");
    await ann.waitForSelector('#todos li .title:text-is("walk the dog")', { timeout: 10000 });
    assert.deepEqual(await titles(ann), ["buy milk", "walk the dog"]);
    assert.deepEqual(await titles(bob), ["buy milk", "walk the dog"]);

    // The owner ticks it: the other tab shows it done.
    await ann.check('#todos li:has(.title:text-is("buy milk")) input[type="checkbox"]');
    await bob.waitForSelector('#todos li.done .title:text-is("buy milk")', { timeout: 10000 });
    // Bob may not change Ann's todo.
    assert.equal(await bob.isDisabled('#todos li:has(.title:text-is("buy milk")) input[type="checkbox"]'), true);

    // A tab opened later loads the current list.
    const carol = await tab("carol");
    await carol.waitForSelector('#todos li.done .title:text-is("buy milk")', { timeout: 10000 });
    assert.deepEqual(await titles(carol), ["buy milk", "walk the dog"]);

    // The owner deletes it: gone everywhere.
    await ann.click('#todos li:has(.title:text-is("buy milk")) button.delete');
    for (const page of [ann, bob, carol]) {
      await page.waitForFunction(() => ![...document.querySelectorAll("#todos li .title")].some((e) => e.textContent === "buy milk"), null, { timeout: 10000 });
    }
    assert.deepEqual(await titles(bob), ["walk the dog"]);
    for (const page of [ann, bob, carol]) assert.deepEqual(page.problems, []);
  });

  test("the ten-line example of docs/client.md works as written", async () => {
    const doc = fs.readFileSync(path.resolve(testsDir, "../../docs/client.md"), "utf8");
    const example = /## Ten lines to start\s+```html\n([\s\S]*?)```/.exec(doc)[1];
    assert.ok(example.trimEnd().split("\n").length <= 10, "the example is longer than ten lines");
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.url}/healthz`);
    await page.setContent(example);
    await page.waitForFunction(() => document.title === "connected", null, { timeout: 15000 });
    const minted = await api(server.url, null, "POST", "/demo/token", { sub: "ann" });
    const r = await api(server.url, minted.body.token, "POST", "/api/todos", { title: "from the docs" });
    assert.equal(r.status, 201);
    await page.waitForSelector('#log li:text-is("create from the docs")', { timeout: 10000 });
    await page.context().close();
  });
});
