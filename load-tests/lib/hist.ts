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

export class Latency {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, autoResize: true });

  /** Records one latency in milliseconds (fractions allowed; negatives clamp to 0). */
  record(ms: number): void {
    this.h.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Compressed base64 (HdrHistogram's own encoding), to ship a histogram from a child process. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.h);
  }

  addEncoded(b64: string): void {
    if (b64) this.h.add(hdr.decodeFromCompressedBase64(b64, 32, false));
  }

  reset(): void {
    this.h.reset();
  }

  summary(): LatencySummary {
    const q = (p: number): number => round(this.h.getValueAtPercentile(p) / 1000);
    return {
      count: this.h.totalCount,
      p50: q(50), p90: q(90), p99: q(99), p999: q(99.9),
      max: round(this.h.maxValue / 1000),
      mean: round(this.h.mean / 1000),
    };
  }
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
