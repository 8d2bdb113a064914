/** Latency histograms (HdrHistogram via hdr-histogram-js), recorded in microseconds, reported in ms. */
import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Whole milliseconds below this are counted in a plain array first (see Latency.record). */
const WHOLE_MS_SLOTS = 65_536;

export class Latency {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
  /**
   * Counts per whole millisecond, folded into the HdrHistogram before it is read. A fan-out
   * subscriber records every entity update (hundreds of thousands per second, all whole ms:
   * `Date.now() - ts`); an array increment costs a fraction of HdrHistogram's recordValue and
   * records exactly the same values.
   */
  private wholeMs: Float64Array | undefined;
  private pendingWholeMs = 0;

  /** Records one latency in milliseconds (fractions allowed; negatives clamp to 0). */
  record(ms: number): void {
    if (Number.isInteger(ms) && ms >= 0 && ms < WHOLE_MS_SLOTS) {
      (this.wholeMs ??= new Float64Array(WHOLE_MS_SLOTS))[ms]! += 1;
      this.pendingWholeMs++;
      return;
    }
    this.h.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  /** Moves the whole-millisecond counts into the HdrHistogram. */
  private fold(): hdr.Histogram {
    const counts = this.wholeMs;
    if (counts && this.pendingWholeMs > 0) {
      for (let ms = 0; ms < WHOLE_MS_SLOTS; ms++) {
        const n = counts[ms]!;
        if (n > 0) this.h.recordValueWithCount(Math.max(1, ms * 1000), n);
      }
      counts.fill(0);
      this.pendingWholeMs = 0;
    }
    return this.h;
  }

  get count(): number {
    return this.fold().totalCount;
  }

  /** Compressed base64 (HdrHistogram's own encoding), to ship a histogram from a child process. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.fold());
  }

  addEncoded(b64: string): void {
    if (b64) this.fold().add(hdr.decodeFromCompressedBase64(b64, 32, false));
  }

  reset(): void {
    this.fold().reset();
  }

  summary(): LatencySummary {
    this.fold();
    const q = (p: number): number => round(this.h.getValueAtPercentile(p) / 1000);
    return {
      count: this.h.totalCount,
      p50: q(50), p90: q(90), p99: q(99), p999: q(99.9),
      max: round(this.h.maxValue / 1000),
      mean: round(this.h.mean / 1000),
    };
  }
}

/** A p99 latency target: met only when there were samples (no traffic is not a pass). */
export function p99Under(ms: number, s: LatencySummary): { target: string; value: number | string; ok: boolean } {
  if (s.count === 0) return { target: `< ${ms} ms`, value: 'no samples', ok: false };
  return { target: `< ${ms} ms`, value: s.p99, ok: s.p99 < ms };
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
