// The page's only way to the system: a client of org.kairos.Extensions1.
//
// Everything shown is kept current by the bus: the extension and job objects come and go
// with ObjectManager's InterfacesAdded/InterfacesRemoved, their values change with
// PropertiesChanged, and JobRemoved says how a job ended. Nothing polls, so a change made
// anywhere (this page, kairos-ext, a file copied into the store) shows up as soon as the
// service announces it. React reads the result through `subscribe`/`snapshot`.

import {
  BOOT_STATES,
  BUS_NAME,
  type BootState,
  type CurrentBoot,
  EXTENSION_IFACE,
  FLAG_NOW,
  type InstallOptions,
  JOB_IFACE,
  type JobPhase,
  type JobResult,
  type JobState,
  type JobType,
  MANAGER_IFACE,
  MANAGER_PATH,
  PROPERTIES_IFACE,
  currentBoot,
  isBootState,
  jobPhase,
  jobResult,
  jobState,
  jobType,
} from "./contract";
import { type StatusInfo, statusOf } from "./status";
import { RateMeter } from "./rate";
import { type Replaced, type UpdateInfo, checkSummary, replaced, updateOf } from "./updates";
import { num, str } from "./values";

export interface ManagerInfo {
  version: string;
  bootState: CurrentBoot;
  bootStates: BootState[];
  merged: string[];
  imagePolicy: string;
  storeDirectory: string;
}

export interface ExtensionInfo {
  path: string;
  name: string;
  version: string;
  source: string;
  digest: string;
  size: number;
  /** µs since the epoch, 0 if unknown. */
  installedTime: number;
  enabled: BootState[];
  merged: boolean;
  status: StatusInfo;
  release: Record<string, string>;
  update: UpdateInfo;
}

export interface JobInfo {
  path: string;
  id: number;
  /** null for a type this page does not know yet. */
  type: JobType | null;
  source: string;
  /** The extensions `source` names ("a, b"); empty for a job about every extension. */
  names: string[];
  name: string;
  state: JobState | null;
  phase: JobPhase | null;
  progress: number;
  bytesDone: number;
  bytesTotal: number;
  error: string;
  /** Jobs ahead of this one while queued; 0 otherwise or on a service without the property. */
  queuePosition: number;
  /** Bytes per second over the last seconds, null until two samples are apart. */
  rate: number | null;
}

/** A job that ended, kept on the page until dismissed (its object is gone by then). */
export interface FinishedJob {
  id: number;
  type: JobType | null;
  name: string;
  source: string;
  result: JobResult;
  error: string;
  /**
   * What a check found, said when it ended (the service announces the changes to the
   * extensions before `JobRemoved`); later changes must not rewrite it. Empty for other jobs.
   */
  checkSummary: string;
  /** The `ExtensionUpdated` signals heard while an update job ran: what it replaced. */
  replaced: Replaced[];
}

export type Connection =
  | { kind: "connecting" }
  | { kind: "ready" }
  | { kind: "unavailable"; error: unknown };

export interface Snapshot {
  connection: Connection;
  manager: ManagerInfo | null;
  extensions: ExtensionInfo[];
  jobs: JobInfo[];
  finished: FinishedJob[];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function states(value: unknown): BootState[] {
  const given = strings(value).filter(isBootState);
  return BOOT_STATES.filter((s) => given.includes(s));
}

function release(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value)) {
      if (typeof v === "string") {
        out[key] = v;
      }
    }
  }
  return out;
}

/** An `a{sv}` as Cockpit delivers it (`{name: {t, v}}`), with the variants unwrapped. */
function unwrapProperties(value: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, variant] of Object.entries(value)) {
      out[key] = variant && typeof variant === "object" && "v" in variant ? (variant as { v: unknown }).v : variant;
    }
  }
  return out;
}

function managerInfo(data: Record<string, unknown>): ManagerInfo {
  return {
    version: str(data.Version),
    bootState: currentBoot(data.BootState),
    bootStates: states(data.BootStates),
    merged: strings(data.Merged),
    imagePolicy: str(data.ImagePolicy),
    storeDirectory: str(data.StoreDirectory),
  };
}

function extensionInfo(path: string, data: Record<string, unknown>): ExtensionInfo {
  return {
    path,
    name: str(data.Name),
    version: str(data.Version),
    source: str(data.Source),
    digest: str(data.Digest),
    size: num(data.Size),
    installedTime: num(data.InstalledTime),
    enabled: states(data.EnabledBootStates),
    merged: data.Merged === true,
    status: statusOf(data),
    release: release(data.Release),
    update: updateOf(data),
  };
}

/** Whether `job` is about extension `name`: it names it, or it names none (every extension). */
export function concerns(job: Pick<JobInfo, "names">, name: string): boolean {
  return job.names.length === 0 || job.names.includes(name);
}

function jobInfo(path: string, data: Record<string, unknown>, rate: number | null): JobInfo {
  const source = str(data.Source);
  return {
    path,
    id: num(data.Id),
    type: jobType(data.Type),
    source,
    names: source.split(", ").filter(Boolean),
    name: str(data.Name),
    state: jobState(data.State),
    phase: jobPhase(data.Phase),
    progress: Math.min(100, num(data.Progress)),
    bytesDone: num(data.BytesDone),
    bytesTotal: num(data.BytesTotal),
    error: str(data.Error),
    queuePosition: num(data.QueuePosition),
    rate,
  };
}

/** How many ended jobs stay listed. */
const FINISHED_KEPT = 8;

export class ExtensionsService {
  private readonly client: CockpitDBusClient;
  /** The Manager's properties; null until first read. */
  private manager: Record<string, unknown> | null = null;
  private readonly extensionProxies: CockpitDBusProxies;
  private readonly jobProxies: CockpitDBusProxies;
  private readonly extensions = new Map<string, ExtensionInfo>();
  private readonly jobs = new Map<string, JobInfo>();
  private readonly rates = new Map<string, RateMeter>();
  /** `ExtensionUpdated` signals heard while each update job lived, by job path. */
  private readonly replacedByJob = new Map<string, Replaced[]>();
  private finished: FinishedJob[] = [];
  private connection: Connection = { kind: "connecting" };
  private current: Snapshot;
  private readonly listeners = new Set<() => void>();
  private scheduled = false;

  constructor() {
    this.client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });
    this.extensionProxies = this.client.proxies(EXTENSION_IFACE, MANAGER_PATH);
    this.jobProxies = this.client.proxies(JOB_IFACE, MANAGER_PATH);
    this.current = this.build();

    // The Manager is read with GetAll and followed with PropertiesChanged by hand: with
    // Cockpit 287, a proxy of the object that also carries the ObjectManager sometimes
    // rejected its wait() as invalid although the object was there (seen in the browser
    // test, about one load in four).
    this.client.subscribe({ path: MANAGER_PATH, interface: PROPERTIES_IFACE, member: "PropertiesChanged" }, (_p, _i, _s, args) =>
      this.managerChanged(args),
    );
    for (const event of ["added", "changed"] as const) {
      this.extensionProxies.addEventListener(event, (_e, proxy) => this.updateExtension(proxy));
      this.jobProxies.addEventListener(event, (_e, proxy) => this.updateJob(proxy));
    }
    this.extensionProxies.addEventListener("removed", (_e, proxy) => {
      this.extensions.delete(proxy.path);
      this.changed();
    });
    this.jobProxies.addEventListener("removed", (_e, proxy) => {
      this.jobs.delete(proxy.path);
      this.rates.delete(proxy.path);
      this.replacedByJob.delete(proxy.path);
      this.changed();
    });
    this.client.subscribe({ path: MANAGER_PATH, interface: MANAGER_IFACE, member: "JobRemoved" }, (_p, _i, _s, args) =>
      this.jobRemoved(args),
    );
    // The service sends it before the JobRemoved of the update that did it, so the job
    // knows what it replaced when it ends.
    this.client.subscribe({ path: MANAGER_PATH, interface: MANAGER_IFACE, member: "ExtensionUpdated" }, (_p, _i, _s, args) =>
      this.extensionUpdated(args),
    );
    // The service exits when idle (idle_exit_sec) and the bus starts it again on the next
    // call; its objects are then announced anew. The page asks at once, so that signals
    // keep coming, and keeps showing what it knew until the answer replaces it, rather
    // than blanking out at every idle exit.
    this.client.addEventListener("owner", (_e, owner) => {
      if (owner === null) {
        this.connection = { kind: "connecting" };
        this.changed();
        this.start();
      } else if (this.connection.kind === "unavailable") {
        // Started again by someone else: no need to wait for "Try again".
        this.start();
      }
    });
    this.client.addEventListener("close", (_e, options) => {
      this.connection = { kind: "unavailable", error: { problem: options.problem ?? "disconnected" } };
      this.changed();
    });
    this.start();
  }

  private start(): void {
    // Reading the Manager is also what starts the service when the bus activates it.
    Promise.all([this.loadManager(), this.extensionProxies.wait(), this.jobProxies.wait()])
      .then(() => {
        // What a restarted service no longer has must go, not only what it announces.
        for (const [known, proxies] of [
          [this.extensions, this.extensionProxies],
          [this.jobs, this.jobProxies],
        ] as const) {
          for (const path of known.keys()) {
            if (!(proxies[path] as CockpitDBusProxy | undefined)?.valid) {
              known.delete(path);
            }
          }
        }
        for (const proxies of [this.extensionProxies, this.jobProxies]) {
          for (const key of Object.keys(proxies)) {
            const proxy = proxies[key] as CockpitDBusProxy;
            if (proxies === this.extensionProxies) {
              this.updateExtension(proxy);
            } else {
              this.updateJob(proxy);
            }
          }
        }
        this.connection = { kind: "ready" };
        this.changed();
      })
      .catch((error: unknown) => {
        this.connection = { kind: "unavailable", error };
        this.changed();
      });
  }

  private async loadManager(): Promise<void> {
    const [properties] = await this.client.call(MANAGER_PATH, PROPERTIES_IFACE, "GetAll", [MANAGER_IFACE]);
    this.manager = unwrapProperties(properties);
    this.changed();
  }

  private managerChanged(args: unknown[]): void {
    const [iface, changed, invalidated] = args;
    if (iface !== MANAGER_IFACE || this.manager === null) {
      return;
    }
    this.manager = { ...this.manager, ...unwrapProperties(changed) };
    this.changed();
    if (Array.isArray(invalidated) && invalidated.length > 0) {
      this.loadManager().catch(() => undefined);
    }
  }

  /** Tries again after the service was unavailable. */
  retry(): void {
    this.connection = { kind: "connecting" };
    this.changed();
    this.start();
  }

  private updateExtension(proxy: CockpitDBusProxy): void {
    if (!proxy.valid || proxy.data.Name === undefined) {
      return;
    }
    this.extensions.set(proxy.path, extensionInfo(proxy.path, proxy.data));
    this.changed();
  }

  private updateJob(proxy: CockpitDBusProxy): void {
    if (!proxy.valid || proxy.data.Id === undefined) {
      return;
    }
    let meter = this.rates.get(proxy.path);
    if (!meter) {
      meter = new RateMeter();
      this.rates.set(proxy.path, meter);
    }
    const rate = meter.sample(performance.now(), num(proxy.data.BytesDone));
    this.jobs.set(proxy.path, jobInfo(proxy.path, proxy.data, rate));
    this.changed();
  }

  private jobRemoved(args: unknown[]): void {
    const [id, path, result] = args;
    const job = typeof path === "string" ? this.jobs.get(path) : undefined;
    const found =
      job?.type === "check" ? checkSummary([...this.extensions.values()].filter((e) => concerns(job, e.name))) : "";
    const ended: FinishedJob = {
      id: num(id),
      type: job?.type ?? null,
      name: job?.name ?? "",
      source: job?.source ?? "",
      result: jobResult(result),
      error: job?.error ?? "",
      checkSummary: found,
      replaced: (typeof path === "string" && this.replacedByJob.get(path)) || [],
    };
    this.finished = [ended, ...this.finished.filter((f) => f.id !== ended.id)].slice(0, FINISHED_KEPT);
    if (typeof path === "string") {
      this.jobs.delete(path);
      this.rates.delete(path);
      this.replacedByJob.delete(path);
    }
    this.changed();
  }

  private extensionUpdated(args: unknown[]): void {
    const signal = replaced(args);
    if (!signal) {
      return;
    }
    // The signal does not say which job sent it: it belongs to the running update jobs
    // that are about this extension (or about every extension with an update).
    for (const job of this.jobs.values()) {
      if (job.type === "update" && job.state !== "queued" && concerns(job, signal.name)) {
        this.replacedByJob.set(job.path, [...(this.replacedByJob.get(job.path) ?? []), signal]);
      }
    }
  }

  dismiss(id: number): void {
    this.finished = this.finished.filter((f) => f.id !== id);
    this.changed();
  }

  /** Batches a burst of signals into one render. */
  private changed(): void {
    if (this.scheduled) {
      return;
    }
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.current = this.build();
      for (const listener of this.listeners) {
        listener();
      }
    });
  }

  private build(): Snapshot {
    const byName = (a: ExtensionInfo, b: ExtensionInfo) => a.name.localeCompare(b.name);
    return {
      connection: this.connection,
      manager: this.manager ? managerInfo(this.manager) : null,
      extensions: [...this.extensions.values()].sort(byName),
      jobs: [...this.jobs.values()].sort((a, b) => a.id - b.id),
      finished: this.finished,
    };
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  snapshot = (): Snapshot => this.current;

  private call(path: string, iface: string, method: string, args: unknown[]): Promise<unknown[]> {
    // "i": polkit may ask for a password through Cockpit instead of refusing outright.
    return this.client.call(path, iface, method, args, { flags: "i" });
  }

  install(source: string, options: InstallOptions): Promise<unknown[]> {
    const dict: Record<string, CockpitVariant> = {};
    if (options.enable.length > 0) {
      dict.enable = cockpit.variant("as", options.enable);
      if (options.now) {
        dict.now = cockpit.variant("b", true);
      }
    }
    if (options.replace) {
      dict.replace = cockpit.variant("b", true);
    }
    if (options.digest) {
      dict.digest = cockpit.variant("s", options.digest);
    }
    return this.call(MANAGER_PATH, MANAGER_IFACE, "Install", [source, dict]);
  }

  setEnabled(extension: ExtensionInfo, state: BootState, enabled: boolean, now: boolean): Promise<unknown[]> {
    return this.call(extension.path, EXTENSION_IFACE, enabled ? "Enable" : "Disable", [state, now ? FLAG_NOW : 0]);
  }

  /** `now`: unmerge it from the running system too, instead of at the next boot. */
  remove(extension: ExtensionInfo, now: boolean): Promise<unknown[]> {
    return this.call(extension.path, EXTENSION_IFACE, "Remove", [now ? FLAG_NOW : 0]);
  }

  /** A check job for every installed extension. */
  checkUpdates(): Promise<unknown[]> {
    return this.call(MANAGER_PATH, MANAGER_IFACE, "CheckUpdates", [[], 0]);
  }

  /** An update job for `extension`; one merged now is merged again with its new image. */
  update(extension: ExtensionInfo): Promise<unknown[]> {
    const options: Record<string, CockpitVariant> = extension.merged ? { now: cockpit.variant("b", true) } : {};
    return this.call(MANAGER_PATH, MANAGER_IFACE, "Update", [[extension.name], options]);
  }

  /** Puts the previous version of `extension` back (merged again when merged now). */
  async rollback(extension: ExtensionInfo): Promise<void> {
    await this.call(MANAGER_PATH, MANAGER_IFACE, "Rollback", [extension.name, extension.merged ? FLAG_NOW : 0]);
  }

  refresh(): Promise<unknown[]> {
    return this.call(MANAGER_PATH, MANAGER_IFACE, "Refresh", [0]);
  }

  cancel(job: JobInfo): Promise<unknown[]> {
    return this.call(job.path, JOB_IFACE, "Cancel", []);
  }

  /** The service's full description (provenance, protection); read on demand. */
  async describe(extension: ExtensionInfo): Promise<Record<string, unknown>> {
    const [json] = await this.client.call(extension.path, EXTENSION_IFACE, "Describe", []);
    const parsed: unknown = JSON.parse(str(json));
    return parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>) : {};
  }
}
