// Numbers and times as Cockpit shows them: binary units, local time.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** `bytes` in binary units, with one decimal above a KiB. */
export function formatBytes(bytes: number): string {
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** µs since the epoch as a local date and time; empty for 0 (unknown). */
export function formatMicroseconds(us: number): string {
  if (!us) {
    return "";
  }
  return new Date(us / 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** "3 of 10 MiB" style progress of a transfer; the total may be unknown (0). */
export function formatTransfer(done: number, total: number): string {
  return total > 0 ? `${formatBytes(done)} of ${formatBytes(total)}` : formatBytes(done);
}
