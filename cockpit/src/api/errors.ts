// Errors from the service in plain words. A D-Bus error name never reaches the screen:
// every name the contract lists has a sentence here, and anything else falls back to
// the service's own message.

const PREFIX = "org.kairos.Extensions1.Error.";

/** What the person was trying to do, to say what they are not allowed to do. */
export type Action = "install" | "manage" | "remove" | "cancel" | "refresh" | "read" | "check" | "update";

const NOT_ALLOWED: Record<Action, string> = {
  install: "You are not allowed to install extensions.",
  manage: "You are not allowed to change which extensions are enabled.",
  remove: "You are not allowed to remove extensions.",
  cancel: "You are not allowed to cancel this job.",
  refresh: "You are not allowed to refresh the merged extensions.",
  read: "You are not allowed to see the extensions.",
  check: "You are not allowed to check for updates.",
  update: "You are not allowed to update or roll back extensions.",
};

/** Sentences for the service's own error kinds; the service's message follows after a colon. */
const KINDS: Record<string, string> = {
  NotFound: "The extension does not exist (any more)",
  AlreadyExists: "An extension of that name is already installed; choose Replace to install over it",
  InvalidName: "The name is not a valid extension name",
  InvalidBootState: "That is not a boot state",
  InvalidSource: "The source is not valid",
  InvalidImage: "The image is not a usable system extension",
  Incompatible: "The image is not compatible with this system",
  DigestMismatch: "The image does not match the expected digest",
  TooLarge: "The image is too large",
  Busy: "The service is busy with too many installs; try again when some have finished",
  Canceled: "Canceled",
  Failed: "The operation failed",
};

function withDetail(sentence: string, detail: string): string {
  const trimmed = detail.trim();
  return trimmed && trimmed !== sentence ? `${sentence}: ${trimmed}` : `${sentence}.`;
}

/** `name` (full or short error name) and `message` as a sentence for a person. */
export function describeError(name: string, message: string, action: Action): string {
  const short = name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name;
  // Rollback is the one call whose NotFound can mean a missing previous version.
  const kind =
    short === "NotFound" && action === "update" ? "The extension or its previous version does not exist (any more)" : KINDS[short];
  if (kind !== undefined) {
    return withDetail(kind, message);
  }
  switch (name) {
    case "org.freedesktop.DBus.Error.AccessDenied":
    case "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired":
    case "org.freedesktop.PolicyKit1.Error.NotAuthorized":
      return NOT_ALLOWED[action];
    case "org.freedesktop.DBus.Error.ServiceUnknown":
    case "org.freedesktop.DBus.Error.NameHasNoOwner":
    case "org.freedesktop.DBus.Error.Spawn.ServiceNotFound":
      return "The system extensions service (kairos-extensionsd) is not installed or could not start.";
    case "org.freedesktop.DBus.Error.NoReply":
    case "org.freedesktop.DBus.Error.Timeout":
      return "The system extensions service did not answer in time.";
    case "org.freedesktop.DBus.Error.InvalidArgs":
      return withDetail("The service refused the request", message);
    case "org.freedesktop.DBus.Error.UnknownMethod":
    case "org.freedesktop.DBus.Error.UnknownObject":
    case "org.freedesktop.DBus.Error.UnknownInterface":
      return withDetail("The service does not offer this (it may be older than this page)", message);
  }
  return message.trim() ? withDetail("The operation failed", message) : "The operation failed.";
}

/** Cockpit's own problems (the connection, not the service). */
function describeProblem(problem: string): string {
  switch (problem) {
    case "access-denied":
      return "You are not allowed to do this.";
    case "not-found":
      return "The system extensions service is not available.";
    case "disconnected":
    case "terminated":
      return "The connection to the system was lost. Reload the page.";
    default:
      return `The request could not be sent (${problem}).`;
  }
}

/** Any rejection of a bus call, as a sentence. */
export function describeFailure(error: unknown, action: Action): string {
  if (error && typeof error === "object") {
    const e = error as { name?: unknown; message?: unknown; problem?: unknown };
    const message = typeof e.message === "string" ? e.message : "";
    if (typeof e.problem === "string" && e.problem) {
      return describeProblem(e.problem);
    }
    if (typeof e.name === "string" && e.name.includes(".")) {
      return describeError(e.name, message, action);
    }
    if (message) {
      return withDetail("The operation failed", message);
    }
  }
  return "The operation failed.";
}

/** A job's `Error` property (`Kind: message`) as a sentence; `what` names the job ("The install"). */
export function describeJobError(error: string, what = "The install"): string {
  const colon = error.indexOf(":");
  if (colon > 0) {
    const kind = error.slice(0, colon);
    if (KINDS[kind] !== undefined || kind.startsWith(PREFIX)) {
      return describeError(kind, error.slice(colon + 1), "install");
    }
  }
  return error.trim() ? withDetail(`${what} failed`, error) : `${what} failed.`;
}
