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
