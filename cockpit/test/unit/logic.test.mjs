// The page's pure logic, without a browser: each TypeScript module is bundled in memory
// by esbuild (as the page is) and imported. Run by `make cockpit` (node --test test/unit).

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { build } from "esbuild";

async function load(module) {
  const out = await build({
    absWorkingDir: new URL("../..", import.meta.url).pathname,
    entryPoints: [`src/${module}`],
    bundle: true,
    format: "esm",
    platform: "neutral",
    write: false,
    logLevel: "error",
  });
  return import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString("base64")}`);
}

const status = await load("api/status.ts");
const errors = await load("api/errors.ts");
const source = await load("api/source.ts");
const rate = await load("api/rate.ts");
const report = await load("api/boot-report.ts");
const format = await load("format.ts");
const updates = await load("api/updates.ts");
const contract = await load("api/contract.ts");
const service = await load("api/service.ts");

describe("status", () => {
  it("reads Status and StatusReason when the service exports them", () => {
    const info = status.statusOf({ Status: "shadowed", StatusReason: "/etc/extensions/k3s.raw is used instead", Compatible: true });
    assert.deepEqual(info, { status: "shadowed", reason: "/etc/extensions/k3s.raw is used instead" });
    assert.deepEqual(status.statusOf({ Status: "ok", StatusReason: "" }), { status: "ok", reason: "" });
  });

  it("falls back to Compatible and IncompatibleReason on an older service", () => {
    assert.deepEqual(status.statusOf({ Compatible: false, IncompatibleReason: 'ID="x" does not match' }), {
      status: "incompatible",
      reason: 'ID="x" does not match',
    });
    assert.deepEqual(status.statusOf({ Compatible: true, IncompatibleReason: "" }), { status: "ok", reason: "" });
  });

  it("shows a status it does not know instead of hiding it", () => {
    const info = status.statusOf({ Status: "quarantined", StatusReason: "" });
    assert.equal(info.status, "unknown");
    assert.match(info.reason, /quarantined/);
  });

  it("says why an extension is not merged", () => {
    const ok = { status: "ok", reason: "" };
    assert.equal(status.notMergedReason(true, ["common"], "none", ok), "");
    assert.match(status.notMergedReason(false, [], "active", ok), /not enabled for any boot state/);
    assert.match(status.notMergedReason(false, ["passive"], "active", ok), /passive, which does not apply to this active boot/);
    assert.match(status.notMergedReason(false, ["active"], "none", ok), /only common applies/);
    assert.match(status.notMergedReason(false, ["common"], "none", ok), /merges at the next boot/);
    const bad = { status: "refused", reason: "the image policy wants a signature" };
    assert.match(status.notMergedReason(false, ["common"], "none", bad), /cannot be merged: the image policy wants a signature/);
  });
});

describe("errors", () => {
  it("never shows a D-Bus error name", () => {
    const names = [
      "org.kairos.Extensions1.Error.NotFound",
      "org.kairos.Extensions1.Error.Incompatible",
      "org.kairos.Extensions1.Error.Busy",
      "org.freedesktop.DBus.Error.AccessDenied",
      "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
      "org.freedesktop.DBus.Error.ServiceUnknown",
      "org.freedesktop.DBus.Error.InvalidArgs",
      "org.example.Unheard.Of",
    ];
    for (const name of names) {
      assert.doesNotMatch(errors.describeError(name, "details", "install"), /org\.|Error\./, name);
    }
  });

  it("says who may not do what", () => {
    assert.equal(errors.describeError("org.freedesktop.DBus.Error.AccessDenied", "", "install"), "You are not allowed to install extensions.");
    assert.equal(errors.describeError("org.freedesktop.DBus.Error.AccessDenied", "", "cancel"), "You are not allowed to cancel this job.");
    assert.equal(
      errors.describeFailure({ name: "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", message: "x" }, "remove"),
      "You are not allowed to remove extensions.",
    );
  });

  it("keeps the service's reason after a plain sentence", () => {
    assert.equal(
      errors.describeError("org.kairos.Extensions1.Error.Incompatible", 'ID="fedora" does not match', "install"),
      'The image is not compatible with this system: ID="fedora" does not match',
    );
    assert.equal(errors.describeJobError("Incompatible: ARCHITECTURE=arm64"), "The image is not compatible with this system: ARCHITECTURE=arm64");
    assert.equal(errors.describeJobError("something broke"), "The install failed: something broke");
    assert.equal(errors.describeFailure({ problem: "disconnected" }, "read"), "The connection to the system was lost. Reload the page.");
  });
});

describe("sources", () => {
  it("takes a bare reference as OCI and leaves schemes alone", () => {
    assert.equal(source.normalizeSource(" quay.io/kairos/k3s:v1 "), "oci://quay.io/kairos/k3s:v1");
    for (const given of ["oci://a/b", "docker://a/b", "https://x/y.raw", "http://x/y.raw", "file:///a.raw", "catalog:k3s", ""]) {
      assert.equal(source.normalizeSource(given), given);
    }
    assert.ok(source.isDigest(`sha256:${"ab".repeat(32)}`));
    assert.ok(!source.isDigest("sha256:abc"));
    assert.ok(!source.isDigest(`sha512:${"ab".repeat(32)}`));
  });
});

describe("transfer rate", () => {
  it("is bytes over the last seconds, and starts over when a new transfer begins", () => {
    const meter = new rate.RateMeter();
    assert.equal(meter.sample(0, 0), null);
    assert.equal(meter.sample(250, 256 * 1024), null, "too soon for a rate");
    assert.equal(meter.sample(1000, 1024 * 1024), 1024 * 1024);
    assert.equal(meter.sample(5000, 3 * 1024 * 1024), null, "only one sample left in the window");
    assert.equal(meter.sample(6000, 4 * 1024 * 1024), 1024 * 1024);
    assert.equal(meter.sample(6500, 1024), null, "fewer bytes: another layer");
  });
});

describe("boot report", () => {
  it("reads what boot-activate writes", () => {
    const parsed = report.parseBootReport({
      boot_state: "active",
      activated: [{ name: "k3s", file: "k3s.raw", states: ["active", "common"] }],
      skipped: [{ name: "bad", reason: "not compatible" }],
    });
    assert.deepEqual(parsed, {
      bootState: "active",
      activated: [{ name: "k3s", states: ["active", "common"] }],
      skipped: [{ name: "bad", reason: "not compatible" }],
    });
    assert.equal(report.parseBootReport({ boot_state: "none" }), null);
    assert.equal(report.parseBootReport([]), null);
  });
});

describe("formatting", () => {
  it("uses binary units", () => {
    assert.equal(format.formatBytes(512), "512 B");
    assert.equal(format.formatBytes(16 * 1024 * 1024), "16.0 MiB");
    assert.equal(format.formatTransfer(1024, 0), "1.0 KiB");
    assert.equal(format.formatTransfer(1024, 2048), "1.0 KiB of 2.0 KiB");
    assert.equal(format.formatMicroseconds(0), "");
  });
});

describe("updates", () => {
  const info = (data) => updates.updateOf(data);

  it("reads UpdateCheck as a type, with anything unknown as the error of a failed check", () => {
    assert.deepEqual(updates.updateCheck(""), { kind: "not-checked" });
    assert.deepEqual(updates.updateCheck(undefined), { kind: "not-checked" });
    for (const kind of ["ok", "pinned", "local", "cannot-check"]) {
      assert.deepEqual(updates.updateCheck(kind), { kind });
    }
    assert.deepEqual(updates.updateCheck("registry: connection refused"), { kind: "failed", error: "registry: connection refused" });
  });

  it("reads the Extension's update properties, with defaults for a service without them", () => {
    assert.deepEqual(info({}), {
      available: false,
      availableVersion: "",
      availableSource: "",
      checkedTime: 0,
      check: { kind: "not-checked" },
      previousVersion: "",
    });
    const read = info({ UpdateAvailable: true, AvailableSource: "oci://r/x:1@sha256:ab", CheckedTime: 5, UpdateCheck: "ok", PreviousVersion: "1" });
    assert.equal(read.available, true);
    assert.equal(read.checkedTime, 5);
    assert.equal(read.previousVersion, "1");
    assert.equal(info({ CheckedTime: Number.NaN }).checkedTime, 0, "not a time");
    assert.equal(info({ AvailableVersion: 2 }).availableVersion, "", "not a version");
  });

  it("shows the version or the source an update would get, and what a check without an answer found", () => {
    const bySource = updates.updateView(info({ UpdateAvailable: true, AvailableSource: "oci://r/x:latest@sha256:ab", UpdateCheck: "ok" }), "1");
    assert.deepEqual(bySource, { tone: "available", label: "Update available", detail: "oci://r/x:latest@sha256:ab" });
    const byVersion = updates.updateView(info({ UpdateAvailable: true, AvailableVersion: "1.33.0", UpdateCheck: "ok" }), "1.32.0");
    assert.equal(byVersion.label, "Update to 1.33.0");
    assert.equal(updates.updateView(info({ UpdateCheck: "ok" }), "1").label, "Up to date");
    assert.equal(updates.updateView(info({}), "1").tone, "none");
    assert.equal(updates.updateView(info({ UpdateCheck: "local" }), "1").label, "Local file");
    assert.equal(updates.updateView(info({ UpdateCheck: "cannot-check" }), "1").label, "Cannot check");
    const failed = updates.updateView(info({ UpdateCheck: "registry: connection refused" }), "1");
    assert.deepEqual([failed.tone, failed.label, failed.detail], ["failed", "Check failed", "registry: connection refused"]);
  });

  it("says a pinned install has a newer version only when it differs from the installed one", () => {
    const newer = updates.updateView(info({ UpdateCheck: "pinned", AvailableVersion: "1.33.0" }), "1.32.0");
    assert.equal(newer.label, "Pinned");
    assert.match(newer.detail, /1\.33\.0 is available/);
    assert.doesNotMatch(updates.updateView(info({ UpdateCheck: "pinned", AvailableVersion: "1.32.0" }), "1.32.0").detail, /available/);
  });

  it("sums up a check, an update and a rollback", () => {
    const ext = (name, data) => ({ name, version: "1", update: info(data) });
    assert.equal(updates.checkSummary([ext("a", { UpdateCheck: "ok" })]), "No update is available.");
    assert.equal(
      updates.checkSummary([ext("a", { UpdateCheck: "ok", UpdateAvailable: true }), ext("b", { UpdateCheck: "down" })]),
      "An update is available for a. The check failed for b.",
    );
    const signal = updates.replaced(["k3s", "1", "2"]);
    assert.deepEqual(signal, { name: "k3s", oldVersion: "1", newVersion: "2" });
    assert.equal(updates.replaced(["k3s", 1, "2"]), null);
    assert.equal(updates.updateJobSummary("k3s", [signal]), "Updated k3s from 1 to 2.");
    assert.match(updates.updateJobSummary("k3s", []), /^Nothing was updated: k3s is up to date/);
    assert.equal(updates.rollbackSummary("k3s", "2", "1"), "Rolled back k3s from 2 to 1");
    assert.equal(updates.rollbackSummary("k3s", "", "1"), "Rolled back k3s from an unversioned image to 1");
  });

  it("takes a job that names no extension to be about every extension", () => {
    assert.ok(service.concerns({ names: ["a", "b"] }, "b"));
    assert.ok(!service.concerns({ names: ["a", "b"] }, "c"));
    assert.ok(service.concerns({ names: [] }, "c"));
  });

  it("knows the job types, and no others", () => {
    assert.deepEqual(["install", "check", "update", "verify"].map(contract.jobType), ["install", "check", "update", null]);
  });

  it("says who may not check or update", () => {
    assert.equal(errors.describeError("org.freedesktop.DBus.Error.AccessDenied", "", "check"), "You are not allowed to check for updates.");
    // Rollback's NotFound may be about the previous version, not the extension.
    assert.equal(
      errors.describeError("org.kairos.Extensions1.Error.NotFound", "k3s has no previous version", "update"),
      "The extension or its previous version does not exist (any more): k3s has no previous version",
    );
    assert.equal(errors.describeJobError("network down", "The check"), "The check failed: network down");
  });
});
