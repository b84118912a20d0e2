// What the service knows about an extension's updates (the Extension properties of API.md
// "Updates and catalogs"), and how the page says it: the result of the last check is kept
// on each object, so the page reads it rather than asking the sources again.

import { num, str } from "./values";

/**
 * `UpdateCheck` as a type: the contract spells the error of a failed check in the same
 * property as the other results, so anything but the known words is that error.
 */
export type UpdateCheck =
  | { kind: "not-checked" }
  | { kind: "ok" }
  | { kind: "pinned" }
  | { kind: "local" }
  | { kind: "cannot-check" }
  | { kind: "failed"; error: string };

export function updateCheck(value: unknown): UpdateCheck {
  switch (value) {
    case undefined:
    case "":
      return { kind: "not-checked" };
    case "ok":
    case "pinned":
    case "local":
    case "cannot-check":
      return { kind: value };
  }
  return { kind: "failed", error: str(value) };
}

export interface UpdateInfo {
  available: boolean;
  /** Only sources that name versions (catalogs) say it; empty otherwise. */
  availableVersion: string;
  /** For a registry tag, the tag with the digest it resolves to now. */
  availableSource: string;
  /** µs since the epoch, 0 if never checked (or the image changed since). */
  checkedTime: number;
  check: UpdateCheck;
  /** What Rollback would restore; empty when there is nothing to roll back to. */
  previousVersion: string;
}

/** The update properties of an extension object (`data` as the bus sent them). */
export function updateOf(data: Record<string, unknown>): UpdateInfo {
  return {
    available: data.UpdateAvailable === true,
    availableVersion: str(data.AvailableVersion),
    availableSource: str(data.AvailableSource),
    checkedTime: num(data.CheckedTime),
    check: updateCheck(data.UpdateCheck),
    previousVersion: str(data.PreviousVersion),
  };
}

/** How an update state is shown: a short label and what it means or what would come. */
export interface UpdateView {
  tone: "available" | "current" | "quiet" | "failed" | "none";
  label: string;
  /** The version or source an update would get, or why there is no answer; may be empty. */
  detail: string;
}

/** `installedVersion`: the version installed now, to tell a newer pinned version from the pin. */
export function updateView(info: UpdateInfo, installedVersion: string): UpdateView {
  const check = info.check;
  // A pinned catalog install still hears of newer versions; it just does not move.
  if (info.available && check.kind !== "pinned") {
    return {
      tone: "available",
      label: info.availableVersion ? `Update to ${info.availableVersion}` : "Update available",
      detail: info.availableSource,
    };
  }
  switch (check.kind) {
    case "not-checked":
      return { tone: "none", label: "Not checked", detail: "" };
    case "ok":
      return { tone: "current", label: "Up to date", detail: "" };
    case "pinned":
      return {
        tone: "quiet",
        label: "Pinned",
        detail:
          info.availableVersion && info.availableVersion !== installedVersion
            ? `${info.availableVersion} is available; the pin stays until it is moved to another version`
            : "Installed from a pinned source, which never changes",
      };
    case "local":
      return { tone: "quiet", label: "Local file", detail: "Installed from a local file: nothing to check" };
    case "cannot-check":
      return {
        tone: "quiet",
        label: "Cannot check",
        detail: "The source cannot tell a newer image (no ETag or Last-Modified, or no recorded source)",
      };
    case "failed":
      return { tone: "failed", label: "Check failed", detail: check.error || "The service gave no reason" };
  }
}

/** What a finished check found, said from the properties as they are now. */
export function checkSummary(extensions: readonly { name: string; version: string; update: UpdateInfo }[]): string {
  const available = extensions.filter((e) => updateView(e.update, e.version).tone === "available").map((e) => e.name);
  const failed = extensions.filter((e) => e.update.check.kind === "failed").map((e) => e.name);
  const parts = [
    available.length === 0
      ? "No update is available."
      : `${available.length === 1 ? "An update is" : "Updates are"} available for ${available.join(", ")}.`,
  ];
  if (failed.length > 0) {
    parts.push(`The check failed for ${failed.join(", ")}.`);
  }
  return parts.join(" ");
}

/** One `ExtensionUpdated` signal: an update or a rollback replaced an image. */
export interface Replaced {
  name: string;
  oldVersion: string;
  newVersion: string;
}

export function replaced(args: unknown[]): Replaced | null {
  const [name, oldVersion, newVersion] = args;
  return typeof name === "string" && typeof oldVersion === "string" && typeof newVersion === "string"
    ? { name, oldVersion, newVersion }
    : null;
}

function versions(oldVersion: string, newVersion: string): string {
  const from = oldVersion || "an unversioned image";
  const to = newVersion || "an unversioned image";
  return from === to ? "to a new image of the same version" : `from ${from} to ${to}`;
}

/** What a finished update job did, from the `ExtensionUpdated` signals it sent. */
export function updateJobSummary(what: string, updates: readonly Replaced[]): string {
  if (updates.length === 0) {
    return `Nothing was updated: ${what || "it"} is up to date, pinned, or its source cannot tell.`;
  }
  return updates.map((u) => `Updated ${u.name} ${versions(u.oldVersion, u.newVersion)}.`).join(" ");
}

/**
 * What a rollback did, from the versions the page showed when it was asked: the service's
 * `ExtensionUpdated` for it carries the same two (the installed version and
 * `PreviousVersion`), so there is no signal to wait for.
 */
export function rollbackSummary(name: string, installedVersion: string, previousVersion: string): string {
  return `Rolled back ${name} ${versions(installedVersion, previousVersion)}`;
}
