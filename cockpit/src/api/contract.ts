// Names and value sets of org.kairos.Extensions1 (dbus-interfaces/org.kairos.Extensions1.xml,
// API.md), as types, so that a misspelt state or phase is a compile error, not a blank cell.

export const BUS_NAME = "org.kairos.Extensions1";
export const MANAGER_PATH = "/org/kairos/Extensions1";
export const MANAGER_IFACE = "org.kairos.Extensions1.Manager";
export const EXTENSION_IFACE = "org.kairos.Extensions1.Extension";
export const JOB_IFACE = "org.kairos.Extensions1.Job";
export const PROPERTIES_IFACE = "org.freedesktop.DBus.Properties";

/** The `NOW` flag: apply the change to the running system too. */
export const FLAG_NOW = 1;

export const BOOT_STATES = ["active", "passive", "recovery", "common"] as const;
/** A state an extension can be enabled for. */
export type BootState = (typeof BOOT_STATES)[number];
/** The boot that is running: a Kairos boot mode, or `none` elsewhere. */
export type CurrentBoot = Exclude<BootState, "common"> | "none";

export const STATUSES = ["ok", "incompatible", "invalid", "refused", "image-missing", "masked", "shadowed"] as const;
/** An extension's `Status`, or `unknown` for a value this page does not know yet. */
export type Status = (typeof STATUSES)[number] | "unknown";

export const JOB_STATES = ["queued", "running", "done", "failed", "canceled"] as const;
export type JobState = (typeof JOB_STATES)[number];

/** What a job does (`Type`). */
export const JOB_TYPES = ["install", "check", "update"] as const;
export type JobType = (typeof JOB_TYPES)[number];

export const JOB_PHASES = ["resolving", "downloading", "verifying", "installing", "enabling", "refreshing"] as const;
export type JobPhase = (typeof JOB_PHASES)[number];

/** How a job ended, as `JobRemoved` says. */
export type JobResult = "done" | "failed" | "canceled";

export function isBootState(value: unknown): value is BootState {
  return typeof value === "string" && (BOOT_STATES as readonly string[]).includes(value);
}

export function currentBoot(value: unknown): CurrentBoot {
  return value === "active" || value === "passive" || value === "recovery" ? value : "none";
}

/** Whether enabling for `state` affects the boot that runs now (engine `BootState::concerns`). */
export function concernsThisBoot(state: BootState, current: CurrentBoot): boolean {
  return state === "common" || state === current;
}

export function jobState(value: unknown): JobState | null {
  return typeof value === "string" && (JOB_STATES as readonly string[]).includes(value) ? (value as JobState) : null;
}

/** A job's type, or null for one this page does not know yet. */
export function jobType(value: unknown): JobType | null {
  return typeof value === "string" && (JOB_TYPES as readonly string[]).includes(value) ? (value as JobType) : null;
}

export function jobPhase(value: unknown): JobPhase | null {
  return typeof value === "string" && (JOB_PHASES as readonly string[]).includes(value) ? (value as JobPhase) : null;
}

export function jobResult(value: unknown): JobResult {
  return value === "done" || value === "canceled" ? value : "failed";
}

/** Install options of API.md; absent fields are not sent. */
export interface InstallOptions {
  enable: BootState[];
  now: boolean;
  replace: boolean;
  /** `sha256:<64 hex>`, or empty. */
  digest: string;
}
