// The part of Cockpit's `cockpit.js` API this page uses. Cockpit publishes no typings for
// it on npm, and the page loads the installed `../base1/cockpit.js` at runtime, so these
// declarations describe that file (as of Cockpit 287) and nothing more. Keep them to what
// is called: every member here is one the compiler checks our use of.

/** A value with an explicit D-Bus signature, for `a{sv}` arguments. */
interface CockpitVariant {
  t: string;
  v: unknown;
}

/** Cockpit's event handlers get the event first, then what was dispatched with it. */
type CockpitHandler<A extends unknown[]> = (event: CustomEvent, ...args: A) => void;

/** The error a D-Bus call or watch rejects with. */
interface CockpitDBusError extends Error {
  /** The D-Bus error name, such as `org.freedesktop.DBus.Error.AccessDenied`. */
  name: string;
  message: string;
  /** A Cockpit transport problem (`not-found`, `disconnected`, ...) instead of a D-Bus error. */
  problem?: string;
}

/** One object's interface, kept current from PropertiesChanged. */
interface CockpitDBusProxy {
  readonly valid: boolean;
  readonly path: string;
  /** Every property the bus told about, by name (absent ones are undefined). */
  readonly data: Record<string, unknown>;
}

/** Every object of one interface under a path namespace, live from ObjectManager. */
interface CockpitDBusProxies {
  readonly [path: string]: CockpitDBusProxy | unknown;
  wait(): Promise<void>;
  addEventListener(type: "added" | "changed" | "removed", handler: CockpitHandler<[CockpitDBusProxy]>): void;
}

interface CockpitDBusSubscription {
  remove(): void;
}

interface CockpitDBusMatch {
  path?: string;
  path_namespace?: string;
  interface?: string;
  member?: string;
}

interface CockpitDBusCallOptions {
  /** `"i"` sets ALLOW_INTERACTIVE_AUTHORIZATION, so polkit may ask through Cockpit. */
  flags?: string;
}

interface CockpitDBusClient {
  call(path: string, iface: string, method: string, args: unknown[], options?: CockpitDBusCallOptions): Promise<unknown[]>;
  subscribe(
    match: CockpitDBusMatch,
    callback: (path: string, iface: string, signal: string, args: unknown[]) => void,
  ): CockpitDBusSubscription;
  proxies(iface: string, pathNamespace: string): CockpitDBusProxies;
  close(problem?: string): void;
  /** `owner`: the bus name got (a string) or lost (null) its owner. `close`: the channel ended. */
  addEventListener(type: "owner", handler: CockpitHandler<[string | null]>): void;
  addEventListener(type: "close", handler: CockpitHandler<[{ problem?: string; message?: string }]>): void;
}

interface CockpitDBusOptions {
  bus: "system" | "session" | "internal";
  superuser?: "try" | "require";
}

interface CockpitFileWatch {
  remove(): void;
}

interface CockpitFile<T> {
  /** Calls back now and at every change (inotify, not polling); `content` is null while the file is absent. */
  watch(callback: (content: T | null, tag: string | null, error?: { problem?: string; message?: string }) => void): CockpitFileWatch;
  close(): void;
}

interface CockpitSyntax<T> {
  parse(text: string): T;
  stringify(value: T): string;
}

/** Whether this session may administer the system (Cockpit's "administrative access"). */
interface CockpitPermission {
  /** null until known. */
  readonly allowed: boolean | null;
  addEventListener(type: "changed", handler: CockpitHandler<[]>): void;
  removeEventListener(type: "changed", handler: CockpitHandler<[]>): void;
}

interface Cockpit {
  dbus(name: string, options: CockpitDBusOptions): CockpitDBusClient;
  variant(type: string, value: unknown): CockpitVariant;
  file<T>(path: string, options: { syntax: CockpitSyntax<T>; superuser?: "try" }): CockpitFile<T>;
  permission(options: { admin: boolean }): CockpitPermission;
}

declare const cockpit: Cockpit;
