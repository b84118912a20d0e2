// What an extension's state means for a person: its status (from `Status`/`StatusReason`,
// or from `Compatible`/`IncompatibleReason` on a service that does not export them yet),
// and why it is not merged.

import { type BootState, type CurrentBoot, STATUSES, type Status, concernsThisBoot } from "./contract";
import { str } from "./values";

export interface StatusInfo {
  status: Status;
  /** One sentence, empty when `ok`. */
  reason: string;
}

/** The status of an extension object's properties (`data` as the bus sent them). */
export function statusOf(data: Record<string, unknown>): StatusInfo {
  const status = data.Status;
  if (typeof status === "string") {
    const reason = str(data.StatusReason);
    const known = (STATUSES as readonly string[]).includes(status);
    return known
      ? { status: status as Status, reason }
      : { status: "unknown", reason: reason || `The service reports the status "${status}".` };
  }
  // A service without Status: Compatible is all there is to go by.
  if (data.Compatible === false) {
    const reason = str(data.IncompatibleReason);
    return { status: "incompatible", reason: reason || "The image does not match this system." };
  }
  return { status: "ok", reason: "" };
}

/** The label shown for a status. */
export function statusLabel(status: Status): string {
  switch (status) {
    case "ok":
      return "OK";
    case "incompatible":
      return "Incompatible";
    case "invalid":
      return "Invalid image";
    case "refused":
      return "Refused by policy";
    case "image-missing":
      return "Image missing";
    case "masked":
      return "Masked";
    case "shadowed":
      return "Shadowed";
    case "unknown":
      return "Unknown";
  }
}

/** What each status means, for the details of an extension. */
export function statusExplanation(status: Status): string {
  switch (status) {
    case "ok":
      return "systemd can merge this image.";
    case "incompatible":
      return "The image was built for another system (ID, version, extension level or architecture), so systemd will not merge it.";
    case "invalid":
      return "systemd would refuse this image: it is not a usable system extension.";
    case "refused":
      return "The image policy or the signature check refuses this image.";
    case "image-missing":
      return "The extension is enabled or recorded, but its image file is gone.";
    case "masked":
      return "An administrator masked this name in /etc/extensions, so systemd ignores the image.";
    case "shadowed":
      return "Another image of the same name, in a directory systemd reads first, is used instead.";
    case "unknown":
      return "This page does not know the status the service reports.";
  }
}

/** Why an extension is not merged right now, in plain words; empty when it is merged. */
export function notMergedReason(
  merged: boolean,
  enabled: readonly BootState[],
  current: CurrentBoot,
  status: StatusInfo,
): string {
  if (merged) {
    return "";
  }
  const forThisBoot = enabled.filter((s) => concernsThisBoot(s, current));
  if (forThisBoot.length === 0) {
    const boot = current === "none" ? "this system (only common applies to a boot that is not Kairos)" : `this ${current} boot`;
    return enabled.length === 0
      ? "It is not enabled for any boot state."
      : `It is enabled for ${enabled.join(", ")}, which does not apply to ${boot}.`;
  }
  if (status.status !== "ok") {
    return `It cannot be merged: ${status.reason || statusExplanation(status.status)}`;
  }
  return `It is enabled for ${forThisBoot.join(", ")} but was not applied to the running system; it merges at the next boot, or now when enabled with "Apply now".`;
}
