// The transfer rate of a job, from the BytesDone values its PropertiesChanged signals
// carry (at most four a second): bytes over the last few seconds, so one late signal
// does not make the rate jump.

/** How far back samples count, in milliseconds. */
const WINDOW_MS = 3000;
/** Samples closer together than this give no rate yet. */
const MIN_SPAN_MS = 400;

export class RateMeter {
  private samples: { t: number; bytes: number }[] = [];

  /** Records `bytes` done at time `t` (ms) and returns the rate in bytes per second. */
  sample(t: number, bytes: number): number | null {
    const last = this.samples[this.samples.length - 1];
    if (last && bytes < last.bytes) {
      // A new transfer in the same job (another layer): start over.
      this.samples = [];
    }
    this.samples.push({ t, bytes });
    this.samples = this.samples.filter((s, i, all) => i === all.length - 1 || t - s.t <= WINDOW_MS);
    const first = this.samples[0];
    const newest = this.samples[this.samples.length - 1];
    if (!first || !newest || newest.t - first.t < MIN_SPAN_MS) {
      return null;
    }
    return ((newest.bytes - first.bytes) * 1000) / (newest.t - first.t);
  }
}
