/** Figures scraped from the bench gateways' /metrics (prom-client text format). */
import { round } from './hist.js';

export interface WriteStats {
  writes: number; pings: number; seconds: number;
  /** Event-loop delay p99 (s) of the last gateway scraped, prom-client's default metric. */
  loopP99: number;
  /** Cumulative counts of geoflux_room_ping_to_frame_seconds by bucket bound (s), summed over the gateways. */
  pingToFrame: Map<number, number>;
}

/** A gateway's /metrics, read once: the value of an unlabelled sample by name (NaN when absent), and its text. */
async function scrape(url: string): Promise<((name: string) => number) & { text: string }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Object.assign((name: string) => Number(new RegExp(`^${name} ([\\d.eE+-]+)$`, 'm').exec(text)?.[1] ?? NaN), { text });
}

/** A histogram's cumulative bucket counts (`le` → count; +Inf as Infinity) from /metrics text. */
export function histogramBuckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} ([\\d.eE+-]+)$`, 'gm');
  for (let m = re.exec(text); m; m = re.exec(text)) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

/**
 * Quantile q of what a histogram observed between two scrapes, interpolated within a bucket as
 * PromQL's histogram_quantile does (seconds); NaN when nothing was observed, the highest finite
 * bound when the quantile falls in +Inf.
 */
export function bucketQuantile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! < rank) continue;
    const hi = bounds[i]!;
    const lo = i === 0 ? 0 : bounds[i - 1]!;
    if (hi === Infinity) return lo;
    const below = i === 0 ? 0 : counts[i - 1]!;
    const inBucket = counts[i]! - below;
    return inBucket > 0 ? lo + ((hi - lo) * (rank - below)) / inBucket : hi;
  }
  return bounds[bounds.length - 2] ?? NaN;
}

/** The gateways' Redis write batches so far (sums of their histograms on /metrics). */
export async function writeStats(gws: readonly { url: string }[]): Promise<WriteStats> {
  const t: WriteStats = { writes: 0, pings: 0, seconds: 0, loopP99: 0, pingToFrame: new Map() };
  for (const g of gws) {
    const sample = await scrape(g.url);
    for (const [le, n] of histogramBuckets(sample.text, 'geoflux_room_ping_to_frame_seconds')) t.pingToFrame.set(le, (t.pingToFrame.get(le) ?? 0) + n);
    const v = (name: string): number => { const x = sample(name); return Number.isNaN(x) ? 0 : x; };
    t.writes += v('geoflux_ingest_batch_pings_count');
    t.pings += v('geoflux_ingest_batch_pings_sum');
    t.seconds += v('geoflux_redis_write_seconds_sum');
    t.loopP99 = Math.max(t.loopP99, v('geoflux_nodejs_eventloop_lag_p99_seconds'));
  }
  return t;
}

/** "Redis writes: n pings per write, mean write t ms" between two scrapes. */
export function writeStatsNote(a: WriteStats, b: WriteStats): string {
  const writes = Math.max(1, b.writes - a.writes);
  const ms = (q: number): number => round(bucketQuantile(a.pingToFrame, b.pingToFrame, q) * 1000, 1);
  const p50 = ms(0.5);
  const frames = Number.isFinite(p50) ? `; oldest ping of a frame received → frame broadcast p50/p99 ≈ ${p50}/${ms(0.99)} ms (/metrics buckets)` : '';
  return `Redis writes: ${round((b.pings - a.pings) / writes, 1)} pings per write, mean write ${round(((b.seconds - a.seconds) / writes) * 1000, 2)} ms (request to reply); event-loop delay p99 ${round(b.loopP99 * 1000, 1)} ms${frames}`;
}

/** A gateway's own process figures from its /metrics (prom-client default metrics). */
export async function processStats(url: string): Promise<{ cpuSeconds: number; rssBytes: number; cpuWaitSeconds?: number }> {
  const v = await scrape(url);
  const wait = v('geoflux_process_cpu_wait_seconds_total');
  return { cpuSeconds: v('geoflux_process_cpu_seconds_total'), rssBytes: v('geoflux_process_resident_memory_bytes'), ...(Number.isNaN(wait) ? {} : { cpuWaitSeconds: wait }) };
}
