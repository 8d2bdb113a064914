/** Figures scraped from the bench gateways' /metrics (prom-client text format). */
import { round } from './hist.js';

export interface WriteStats { writes: number; pings: number; seconds: number; /** Event-loop delay p99 (s) of the last gateway scraped, prom-client's default metric. */ loopP99: number }

/** A gateway's /metrics, read once: the value of an unlabelled sample by name (NaN when absent). */
async function scrape(url: string): Promise<(name: string) => number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return (name) => Number(new RegExp(`^${name} ([\\d.eE+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** The gateways' Redis write batches so far (sums of their histograms on /metrics). */
export async function writeStats(gws: readonly { url: string }[]): Promise<WriteStats> {
  const t: WriteStats = { writes: 0, pings: 0, seconds: 0, loopP99: 0 };
  for (const g of gws) {
    const sample = await scrape(g.url);
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
  return `Redis writes: ${round((b.pings - a.pings) / writes, 1)} pings per write, mean write ${round(((b.seconds - a.seconds) / writes) * 1000, 2)} ms (request to reply); event-loop delay p99 ${round(b.loopP99 * 1000, 1)} ms`;
}

/** A gateway's own process figures from its /metrics (prom-client default metrics). */
export async function processStats(url: string): Promise<{ cpuSeconds: number; rssBytes: number }> {
  const v = await scrape(url);
  return { cpuSeconds: v('geoflux_process_cpu_seconds_total'), rssBytes: v('geoflux_process_resident_memory_bytes') };
}
