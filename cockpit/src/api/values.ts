// Bus values as the page reads them: Cockpit hands over whatever the service sent (or
// nothing, from an older service), so a value of the wrong type reads as the empty one.

export function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** A number, or 0 for anything else, NaN and the infinities included. */
export function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}
