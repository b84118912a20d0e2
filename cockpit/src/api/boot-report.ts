// The last boot activation's report, /run/kairos-extensions/boot.json (written by
// `kairos-extensionsd boot-activate`, service/src/engine/activation.rs): what was
// activated at boot and what was skipped, and why. Watched, so a new report shows at once.

import { type BootState, isBootState } from "./contract";

export const BOOT_REPORT_PATH = "/run/kairos-extensions/boot.json";

export interface BootReport {
  bootState: string;
  activated: { name: string; states: BootState[] }[];
  skipped: { name: string; reason: string }[];
}

export type BootReportState =
  | { kind: "loading" }
  | { kind: "absent" }
  | { kind: "present"; report: BootReport }
  | { kind: "unreadable"; message: string };

function list(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => !!v && typeof v === "object") : [];
}

/** The report as written by the activator; anything else is unreadable. */
export function parseBootReport(value: unknown): BootReport | null {
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return null;
  }
  const v = value as Record<string, unknown>;
  if (typeof v.boot_state !== "string" || !Array.isArray(v.activated) || !Array.isArray(v.skipped)) {
    return null;
  }
  return {
    bootState: v.boot_state,
    activated: list(v.activated).map((a) => ({
      name: String(a.name ?? ""),
      states: Array.isArray(a.states) ? a.states.filter(isBootState) : [],
    })),
    skipped: list(v.skipped).map((s) => ({ name: String(s.name ?? ""), reason: String(s.reason ?? "") })),
  };
}

/** Calls `onChange` with the report now and whenever the file changes; returns the stop function. */
export function watchBootReport(onChange: (state: BootReportState) => void): () => void {
  const file = cockpit.file<unknown>(BOOT_REPORT_PATH, { syntax: JSON, superuser: "try" });
  const watch = file.watch((content, _tag, error) => {
    if (error?.problem === "access-denied") {
      onChange({ kind: "unreadable", message: "it needs administrative access." });
    } else if (error) {
      onChange({ kind: "unreadable", message: error.message || error.problem || "it is not valid JSON." });
    } else if (content === null) {
      onChange({ kind: "absent" });
    } else {
      const report = parseBootReport(content);
      onChange(report ? { kind: "present", report } : { kind: "unreadable", message: "it is not a boot report" });
    }
  });
  return () => {
    watch.remove();
    file.close();
  };
}
