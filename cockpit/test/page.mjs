// The page in Debian's Chromium, driven by playwright-core, against the real system that
// tests/tests/cockpit.rs sets up (cockpit-ws, the service, polkitd, a registry). Run it
// through that test: `cargo test -p kairos-extensions-tests --test cockpit` (make test does).
//
// Every wait is bounded and waits for a state, never for a time; no assertion is about
// how long something took (the latency of a change made elsewhere is reported, not judged).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import { chromium } from "playwright-core";

function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: this test runs from tests/tests/cockpit.rs ` +
        "(cargo test -p kairos-extensions-tests --test cockpit; make test runs it)",
    );
  }
  return value;
}

const ADMIN_URL = env("KX_ADMIN_URL");
const READER_URL = env("KX_READER_URL");
const REGISTRY = env("KX_REGISTRY");
const SLOW = [env("KX_SLOW_ONE"), env("KX_SLOW_TWO")];
const NS_PID = env("KX_NS_PID");
const STORE = env("KX_STORE");
const COPIED_IMAGE = env("KX_COPIED_IMAGE");
const KAIROS_EXT = env("KX_KAIROS_EXT");
/** argv that pushes greeter v2 under the tag greeter v1 was installed from. */
const PUSH_UPDATE = JSON.parse(env("KX_PUSH_UPDATE"));
const SCREENSHOTS = env("KX_SCREENSHOTS");
/** argv that starts the service again, as bus activation would after an idle exit. */
const SERVICE_COMMAND = JSON.parse(env("KX_SERVICE_COMMAND"));

/** Chromium as TESTING.md runs it: no sandbox (root), nothing that reaches the network. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The service this test started again, stopped when the run ends. */
let restarted;

/** Errors the browser reported, from every page of the run. */
const consoleErrors = [];
/** Everything the browser logged, to explain a failure. */
const consoleLog = [];
let browser;

function watchConsole(page, session) {
  page.on("console", (message) => {
    consoleLog.push(`${session} ${message.type()}: ${message.text()}`);
    if (message.type() === "error") {
      consoleErrors.push(`${session}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => consoleErrors.push(`${session}: uncaught ${error.message}`));
}

async function openPage(url, session) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
  page.setDefaultTimeout(20_000);
  watchConsole(page, session);
  await page.goto(url);
  return page;
}

/** Polls `check` (in this process, against the DOM) until it returns something truthy. */
async function until(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) {
        return last;
      }
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what}; last saw: ${last}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The table row of extension `name`. */
function row(page, name) {
  return page.locator(`tbody[data-extension="${name}"] > tr`).first();
}

async function cell(page, name, column) {
  return (await row(page, name).locator(`td[data-label="${column}"]`).innerText()).trim();
}

/** What systemd-sysext has merged inside the service's namespace. */
function mergedInNamespace() {
  const out = execFileSync("nsenter", ["-t", NS_PID, "-m", "--", "cat", "/usr/.systemd-sysext/extensions"], {
    encoding: "utf8",
  });
  return out.split(/\s+/).filter(Boolean);
}

/** What greeter's binary answers in the service's namespace: its version, as merged now. */
function greeterSays() {
  return execFileSync("nsenter", ["-t", NS_PID, "-m", "--", "/usr/bin/kx-greeter"], { encoding: "utf8" }).trim();
}

/** Every path under the store with its size or link target, to prove nothing changed. */
function storeListing(dir = STORE, prefix = "") {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const relative = prefix + entry.name;
    if (relative === ".lock") {
      continue;
    }
    const full = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) {
      out.push(`${relative} -> ${fs.readlinkSync(full)}`);
    } else if (entry.isDirectory()) {
      out.push(`${relative}/`, ...storeListing(full, `${relative}/`));
    } else {
      out.push(`${relative} (${fs.statSync(full).size})`);
    }
  }
  return out;
}

async function installThroughDialog(page, source) {
  await page.getByRole("button", { name: "Install…" }).click();
  const dialog = page.getByRole("dialog", { name: "Install a system extension" });
  await dialog.getByLabel("Source").fill(source);
  await dialog.getByRole("button", { name: "Install", exact: true }).click();
  return dialog;
}

before(async () => {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  if (restarted && restarted.exitCode === null) {
    const exited = new Promise((resolve) => restarted.once("exit", resolve));
    restarted.kill("SIGTERM");
    await exited;
  }
});

describe("an administrator", () => {
  let page;
  let navigations = 0;

  before(async () => {
    page = await openPage(ADMIN_URL, "admin");
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) {
        navigations += 1;
      }
    });
    navigations = 0;
  });

  it("sees what is installed, the boot state, what is merged and the last boot activation", async () => {
    await row(page, "hello")
      .waitFor()
      .catch(async (error) => {
        const shown = await page.locator("body").innerText();
        throw new Error(`${error.message}\nThe page shows:\n${shown}\nThe console said:\n${consoleLog.join("\n")}`);
      });
    assert.equal(await cell(page, "hello", "Version"), "1.0");
    assert.equal(await cell(page, "hello", "Enabled for"), "active");
    assert.equal(await cell(page, "hello", "Merged"), "Merged");
    assert.equal(await cell(page, "hello", "Status"), "OK");
    assert.equal(await cell(page, "alien", "Status"), "Incompatible");
    assert.equal(await cell(page, "alien", "Merged"), "No");
    assert.match(await page.locator("#boot-state").innerText(), /Kairos active boot/);
    assert.equal((await page.locator("#merged-now").innerText()).trim(), "hello");
    const report = await page.locator("#boot-report").innerText();
    assert.match(report, /Activated for the active boot: hello\./);
    assert.match(report, /alien: .+/, "the skipped extension is named with its reason");

    await page.getByRole("button", { name: "alien Details" }).click();
    const details = await page.locator('dl[aria-label="Details of alien"]').innerText();
    assert.match(details, /Incompatible: .+/);
    assert.match(details, /No\. It cannot be merged: .+/, "the page says why alien is not merged");
    await page.getByRole("button", { name: "alien Details" }).click();
  });

  it("installs from the local registry, and the row appears without a reload", async () => {
    const dialog = await installThroughDialog(page, `${REGISTRY}/tools:2.0`);
    await dialog.waitFor({ state: "hidden" });
    await page.locator("#jobs .pf-v6-c-alert", { hasText: "Installed tools" }).waitFor();
    await row(page, "tools").waitFor();
    assert.equal(await cell(page, "tools", "Version"), "2.0");
    // The source is truncated in the middle on screen; the text is all there.
    assert.equal((await cell(page, "tools", "Source")).replace(/\s+/g, ""), `oci://${REGISTRY}/tools:2.0`);
    assert.equal(await cell(page, "tools", "Enabled for"), "none");
    assert.equal(navigations, 0, "the page never reloaded");
  });

  it("says in plain words why a request or an install failed", async () => {
    const dialog = await installThroughDialog(page, "ftp://example.com/x.raw");
    const refused = dialog.getByRole("heading", { name: /The source is not valid/ });
    await refused.waitFor();
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });

    await installThroughDialog(page, `${REGISTRY}/missing:1`);
    const failed = page.locator(".pf-v6-c-alert", { hasText: "Could not install" });
    await failed.waitFor();
    const text = await failed.innerText();
    assert.doesNotMatch(await page.locator("body").innerText(), /org\.(kairos|freedesktop)\./, "no D-Bus names on the page");
    assert.doesNotMatch(text, /^(NotFound|InvalidSource|Failed|InvalidImage):/m, "no raw error kinds");
    await failed.getByRole("button", { name: "Dismiss" }).click();
  });

  it("lists slow installs with phase, bytes and rate or their place in line, and Cancel leaves nothing behind", async () => {
    const before = storeListing();
    for (const source of SLOW) {
      const dialog = await installThroughDialog(page, source);
      await dialog.waitFor({ state: "hidden" });
    }
    const list = page.getByRole("list", { name: "Jobs in progress" });
    const items = list.getByRole("listitem");
    await until("two installs listed", async () => (await items.count()) === 2);
    // max_jobs = 1: the first downloads, the second waits for it (jobs are listed by id).
    const [running, queued] = await items.all();
    await until("the running install's phase, bytes and rate", async () => {
      const text = await running.innerText();
      return /Downloading · [\d.]+ (B|KiB|MiB) of 16\.\d MiB · [\d.]+ (B|KiB|MiB)\/s/.test(text) && text;
    });
    await until("the bar moving", async () => Number(await running.getByRole("progressbar").getAttribute("aria-valuenow")) > 0);
    await until("the queued install's place", async () => /Waiting for 1 job ahead/.test(await queued.innerText()));
    // Handles, not positions: the list shrinks as each job ends.
    for (const button of await list.getByRole("button", { name: /^Cancel the install of / }).elementHandles()) {
      await button.click();
    }
    const canceled = page.locator(".pf-v6-c-alert", { hasText: /The install of .+ was canceled/ });
    await until("both installs canceled", async () => (await canceled.count()) === 2);
    await list.waitFor({ state: "detached" });
    assert.deepEqual(storeListing(), before, "a canceled install leaves nothing in the store");
    assert.deepEqual(fs.readdirSync(path.join(STORE, ".tmp")), [], "nor in its staging directory");
    // Tidy the page for the screenshots.
    const dismiss = page.locator("#jobs").getByRole("button", { name: "Dismiss" });
    for (let left = await dismiss.count(); left > 0; left -= 1) {
      await dismiss.first().click();
    }
    await page.locator("#jobs").waitFor({ state: "detached" });
  });

  it("merges tools when common is turned on with Apply now", async () => {
    await page.getByRole("button", { name: "tools Details" }).click();
    const now = page.getByRole("checkbox", { name: "Apply now: common for tools on the running system" });
    await now.check();
    const passiveNow = page.getByRole("checkbox", { name: "Apply now: passive for tools on the running system" });
    assert.ok(await passiveNow.isDisabled(), "passive does not apply to this active boot");
    // By keyboard, as a screen-reader user would.
    await page.getByRole("switch", { name: "Enable tools for common" }).focus();
    await page.keyboard.press("Space");
    await until("tools merged on the page", async () => (await cell(page, "tools", "Merged")) === "Merged");
    assert.match(await cell(page, "tools", "Enabled for"), /common/);
    assert.ok(mergedInNamespace().includes("tools"), `merged: ${mergedInNamespace()}`);
    execFileSync("nsenter", ["-t", NS_PID, "-m", "--", "test", "-x", "/usr/bin/kx-tools"]);
    await until("tools in Merged now", async () => /tools/.test(await page.locator("#merged-now").innerText()));
  });

  it("looks like Cockpit in the light and the dark theme", async () => {
    await page.mouse.move(0, 0);
    // Tall enough for the expanded row: the page scrolls inside, so fullPage alone stops at the fold.
    await page.setViewportSize({ width: 1280, height: 960 });
    await page.screenshot({ path: path.join(SCREENSHOTS, "cockpit-light.png"), fullPage: true });
    await page.emulateMedia({ colorScheme: "dark" });
    await until("the dark theme", () => page.evaluate(() => document.documentElement.classList.contains("pf-v6-theme-dark")));
    await page.screenshot({ path: path.join(SCREENSHOTS, "cockpit-dark.png"), fullPage: true });
    await page.emulateMedia({ colorScheme: "light" });
    await until("the light theme", () => page.evaluate(() => !document.documentElement.classList.contains("pf-v6-theme-dark")));
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("shows changes made elsewhere: kairos-ext in another process, a file copied into the store", async (t) => {
    execFileSync(KAIROS_EXT, ["disable", "tools", "--boot", "common", "--now"], { stdio: "pipe" });
    const asked = Date.now();
    await until("tools disabled and unmerged on the page", async () => {
      return (await cell(page, "tools", "Enabled for")) === "none" && (await cell(page, "tools", "Merged")) === "No";
    });
    t.diagnostic(`a change by kairos-ext showed on the page ${Date.now() - asked} ms after kairos-ext returned`);
    assert.ok(!mergedInNamespace().includes("tools"));

    fs.copyFileSync(COPIED_IMAGE, path.join(STORE, "copied.raw"));
    const copied = Date.now();
    await row(page, "copied").waitFor();
    t.diagnostic(`a file copied into the store showed ${Date.now() - copied} ms later`);
    assert.equal(await cell(page, "copied", "Version"), "3");
    assert.equal(navigations, 0, "the page never reloaded");
  });

  it("refreshes the merge and says what is merged", async () => {
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.locator(".pf-v6-c-alert", { hasText: "Refreshed: merged hello" }).waitFor();
    assert.deepEqual(mergedInNamespace(), ["hello"]);
  });

  it("checks for updates, updates greeter to what its tag holds now, and rolls it back", async () => {
    execFileSync(KAIROS_EXT, ["install", `oci://${REGISTRY}/greeter:latest`, "--enable", "common", "--now"], { stdio: "pipe" });
    await until("greeter merged on the page", async () => (await cell(page, "greeter", "Merged")) === "Merged");
    assert.equal(greeterSays(), "v1");
    assert.equal(await cell(page, "greeter", "Update"), "Not checked");
    assert.equal(await page.getByRole("button", { name: /^Roll back greeter/ }).count(), 0, "nothing to roll back to yet");
    execFileSync(PUSH_UPDATE[0], PUSH_UPDATE.slice(1), { stdio: "pipe" });

    // A check job for every extension, listed like an install: here it waits in line
    // behind a slow install (max_jobs = 1), and runs once that is canceled.
    const slow = await installThroughDialog(page, SLOW[0]);
    await slow.waitFor({ state: "hidden" });
    // By its text: its name gains "Loading..." while the check is on.
    const checkButton = page.locator("button", { hasText: "Check for updates" });
    await checkButton.click();
    const list = page.getByRole("list", { name: "Jobs in progress" });
    const queued = list.getByRole("listitem").filter({ hasText: "Check for updates" });
    await until("the check waiting in line", async () => /Waiting for 1 job ahead/.test(await queued.innerText()));
    assert.equal(await checkButton.getAttribute("aria-disabled"), "true", "one check at a time from the page");
    await list.getByRole("button", { name: /^Cancel the install of / }).click();
    // What the check found stays on each row.
    const checked = page.locator("#jobs .pf-v6-c-alert", { hasText: "Checked for updates" });
    await checked.waitFor();
    assert.match(await checked.innerText(), /An update is available for greeter\./);
    await until("greeter's update on the page", async () => /^Update available/.test(await cell(page, "greeter", "Update")));
    // The source it would get: the tag, with the digest it resolves to now.
    const offered = (await cell(page, "greeter", "Update")).replace(/\s+/g, "");
    assert.match(offered, new RegExp(`oci://${REGISTRY}/greeter:latest@sha256:[0-9a-f]{64}$`));
    assert.equal(await cell(page, "tools", "Update"), "Up to date");
    assert.equal(await cell(page, "hello", "Update"), "Local file");
    assert.match(await cell(page, "alien", "Update"), /^Cannot check/, "no recorded source");
    assert.equal(greeterSays(), "v1", "a check changes nothing");

    // Update: merged now, so merged again with the new image.
    await page.getByRole("button", { name: "Update greeter" }).click();
    const updated = page.locator("#jobs .pf-v6-c-alert", { hasText: "Updated greeter" });
    await updated.waitFor();
    assert.match(await updated.innerText(), /Updated greeter from 1 to 2\./);
    await until("greeter 2 on the page", async () => (await cell(page, "greeter", "Version")) === "2");
    assert.equal(greeterSays(), "v2", "the new image is merged");
    assert.equal(await cell(page, "greeter", "Merged"), "Merged");
    await until("the update done", async () => (await cell(page, "greeter", "Update")) === "Not checked");
    assert.equal(await page.getByRole("button", { name: "Update greeter" }).count(), 0);

    // Roll back: one step, merged again, and v2 becomes the one to roll back to.
    await page.getByRole("button", { name: "Roll back greeter to 1" }).click();
    await page.locator(".pf-v6-c-alert", { hasText: "Rolled back greeter from 2 to 1" }).waitFor();
    await until("greeter 1 on the page", async () => (await cell(page, "greeter", "Version")) === "1");
    assert.equal(greeterSays(), "v1", "the previous image is merged again");
    await page.getByRole("button", { name: "Roll back greeter to 2" }).waitFor();
    assert.equal(navigations, 0, "the page never reloaded");
  });

  it("asks before Remove, then the row goes", async () => {
    await page.getByRole("button", { name: "Remove tools" }).click();
    const dialog = page.getByRole("dialog", { name: "Remove tools?" });
    await dialog.waitFor();
    assert.ok(await row(page, "tools").isVisible(), "nothing is removed before the answer");
    assert.ok(fs.existsSync(path.join(STORE, "tools.raw")));
    await dialog.getByRole("button", { name: "Remove", exact: true }).click();
    await row(page, "tools").waitFor({ state: "detached" });
    assert.ok(!fs.existsSync(path.join(STORE, "tools.raw")), "the image is gone from the store");
  });

  it("follows the service when it stops and starts again", async () => {
    const status = execFileSync("busctl", ["--system", "status", "org.kairos.Extensions1"], { encoding: "utf8" });
    const pid = Number(/^PID=(\d+)$/m.exec(status)?.[1]);
    assert.ok(pid > 0, status);
    process.kill(pid, "SIGTERM");
    // This bus cannot activate the service, so the page's question finds nobody.
    await page.getByText("The system extensions service is not available").waitFor();
    restarted = spawn(SERVICE_COMMAND[0], SERVICE_COMMAND.slice(1), { stdio: "ignore" });
    await row(page, "hello").waitFor();
    await row(page, "copied").waitFor();
    assert.equal(await cell(page, "hello", "Merged"), "Merged");
    // Live again: a change made now reaches the page from the new process.
    execFileSync(KAIROS_EXT, ["enable", "hello", "--boot", "passive"], { stdio: "pipe" });
    await until("hello enabled for passive", async () => /passive/.test(await cell(page, "hello", "Enabled for")));
    assert.equal(navigations, 0, "the page never reloaded");
    await page.close();
  });
});

describe("a user without administrative access", () => {
  it("sees everything, read-only, with a hint to turn on administrative access", async () => {
    const page = await openPage(READER_URL, "reader");
    await row(page, "hello").waitFor();
    assert.equal(await cell(page, "hello", "Merged"), "Merged");
    await page.getByText("Read only: you do not have administrative access").waitFor();
    // "Roll back greeter to 2" is there because the administrator's tests above updated
    // greeter to 2 and rolled it back to 1: this test runs after them, on what they left.
    for (const name of ["Install…", "Refresh", "Check for updates", "Remove hello", "Roll back greeter to 2"]) {
      assert.equal(await page.getByRole("button", { name }).getAttribute("aria-disabled"), "true", name);
    }
    await page.getByRole("button", { name: "hello Details" }).click();
    for (const state of ["active", "passive", "recovery", "common"]) {
      assert.ok(await page.getByRole("switch", { name: `Enable hello for ${state}` }).isDisabled(), state);
    }
    // boot.json is readable by everyone (0644): what happened at boot is no secret.
    assert.match(await page.locator("#boot-report").innerText(), /Activated for the active boot: hello/);
    await page.close();
  });
});

describe("the browser console", () => {
  it("had no errors during the whole run", () => {
    assert.deepEqual(consoleErrors, [], `${consoleErrors.length} console errors`);
  });
});
