/**
 * GET /v1/stats: the live figures of the map page's side panel, for the caller's tenant.
 *   pingsPerSecond   accepted pings/s on this gateway (prom-client counter, rate over ~10 s)
 *   entitiesLive     live entities of the tenant (Redis last-seen sets of its active cells)
 *   deliveryMs       ping-to-room-emit delay on this gateway (prom-client histogram, mean over ~10 s), when rooms expose one
 *   persistenceLagMs worst lag reported by the persistence workers (their status keys in Redis)
 * A figure that is not available is null (the page shows "n/a").
 */
import type { TemplatedApp } from 'uWebSockets.js';
import type { Redis } from 'ioredis';
import { register } from 'prom-client';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope, hasScope } from '../../auth/tokens.js';
import { AppError } from '../../errors/app-error.js';
import type { Keys } from '../../store/redis/keys.js';
import { parseCellMember } from '../../store/redis/keys.js';
import { bearerToken, route } from '../respond.js';

export interface StatsDeps {
  log: Logger;
  verifier: TokenVerifier;
  redis: Redis;
  keys: Keys;
  keyPrefix: string;
  entityTtlSeconds: number;
  /** Number of room-serving socket.io clients on this gateway. */
  mapClients?: () => number;
}

export interface StatsBody {
  ts: number;
  tenant: string;
  pingsPerSecond: number | null;
  pingsTotal: number | null;
  entitiesLive: number | null;
  activeCells: number | null;
  deliveryMs: number | null;
  persistenceLagMs: number | null;
  workers: number;
  mapClients: number | null;
}

const MAX_CELLS = 5000;
const WINDOW_MS = 10_000;

interface Sample { at: number; pings: number; delaySum: number; delayCount: number }

/** Counter/histogram names read from the process registry (declared by ingest and rooms). */
const PINGS_COUNTER = 'geoflux_pings_accepted_total';
const DELAY_HISTOGRAM = /^geoflux_.*(deliver|fanout|fan_out|emit).*(seconds|ms)$/;

async function sampleMetrics(): Promise<{ pings: number | null; delaySum: number; delayCount: number; delayUnitMs: number; hasDelay: boolean }> {
  const all = await register.getMetricsAsJSON();
  let pings: number | null = null;
  let delaySum = 0, delayCount = 0, delayUnitMs = 1000, hasDelay = false;
  for (const m of all) {
    if (m.name === PINGS_COUNTER) {
      pings = 0;
      for (const v of m.values) if (v.labels.outcome === undefined || v.labels.outcome !== 'duplicate') pings += v.value;
    } else if (String(m.type) === 'histogram' && DELAY_HISTOGRAM.test(m.name) && !hasDelay) {
      hasDelay = true;
      delayUnitMs = m.name.endsWith('_ms') ? 1 : 1000;
      for (const v of m.values as { value: number; metricName?: string }[]) {
        if (v.metricName?.endsWith('_sum')) delaySum += v.value;
        if (v.metricName?.endsWith('_count')) delayCount += v.value;
      }
    }
  }
  return { pings, delaySum, delayCount, delayUnitMs, hasDelay };
}

export function registerStatsRoute(app: TemplatedApp, d: StatsDeps): void {
  const samples: Sample[] = [];

  const entitiesLive = async (tenant: string, now: number): Promise<{ live: number; cells: number }> => {
    const minScore = now - d.entityTtlSeconds * 1000;
    const members = await d.redis.zrangebyscore(d.keys.activeCells, minScore, '+inf', 'LIMIT', 0, MAX_CELLS);
    const cells = members.map(parseCellMember).filter((c) => c.tenant === tenant);
    if (cells.length === 0) return { live: 0, cells: 0 };
    const pipe = d.redis.pipeline();
    for (const c of cells) pipe.zcount(d.keys.cell(tenant, c.cell).seen, minScore, '+inf');
    const res = (await pipe.exec()) ?? [];
    let live = 0;
    for (const [err, n] of res) if (!err) live += Number(n);
    return { live, cells: cells.length };
  };

  /** Worker status keys (`<prefix>worker:<instance>`, JSON with lag_ms): the worst lag. */
  const persistenceLag = async (): Promise<{ lagMs: number | null; workers: number }> => {
    let cursor = '0', lagMs: number | null = null, workers = 0;
    const pattern = `${d.keyPrefix}worker:*`;
    for (let i = 0; i < 20; i++) {
      const [next, keys] = await d.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
      const vals = keys.length ? await d.redis.mget(...keys) : [];
      for (const v of vals) {
        if (!v) continue;
        try {
          const s = JSON.parse(v) as Record<string, unknown>;
          const lag = Number(s.lag_ms ?? s.lagMs ?? (typeof s.lag_seconds === 'number' ? s.lag_seconds * 1000 : NaN));
          workers++;
          if (Number.isFinite(lag)) lagMs = Math.max(lagMs ?? 0, lag);
        } catch { /* not a status document */ }
      }
      cursor = next;
      if (cursor === '0') break;
    }
    return { lagMs, workers };
  };

  app.get('/v1/stats', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    if (!hasScope(who, 'query') && !hasScope(who, 'subscribe')) requireScope(who, 'query');
    const now = Date.now();
    const m = await sampleMetrics();
    const cur: Sample = { at: now, pings: m.pings ?? 0, delaySum: m.delaySum, delayCount: m.delayCount };
    // Keep the oldest sample within the window as the baseline; a baseline older than 1.5 windows
    // (nobody polled for a while) would average over a stale period, so it is dropped.
    while (samples.length > 1 && now - samples[1]!.at >= WINDOW_MS) samples.shift();
    if (samples.length > 0 && now - samples[0]!.at > WINDOW_MS * 1.5) samples.length = 0;
    const old = samples[0];
    samples.push(cur);
    if (samples.length > 200) samples.splice(0, samples.length - 200);
    let pingsPerSecond: number | null = null, deliveryMs: number | null = null;
    if (old && now - old.at >= 500) {
      if (m.pings !== null) pingsPerSecond = Math.round(((cur.pings - old.pings) * 10_000) / (now - old.at)) / 10;
      if (m.hasDelay && cur.delayCount > old.delayCount) {
        deliveryMs = Math.round(((cur.delaySum - old.delaySum) / (cur.delayCount - old.delayCount)) * m.delayUnitMs * 10) / 10;
      }
    }
    let live: { live: number; cells: number } | undefined;
    let lag: { lagMs: number | null; workers: number } = { lagMs: null, workers: 0 };
    try {
      [live, lag] = await Promise.all([entitiesLive(who.tenant, now), persistenceLag()]);
    } catch (err) {
      d.log.warn({ err }, 'stats: redis read failed');
      throw new AppError('UNAVAILABLE', 'redis unavailable');
    }
    const body: StatsBody = {
      ts: now, tenant: who.tenant, pingsPerSecond, pingsTotal: m.pings, entitiesLive: live.live, activeCells: live.cells,
      deliveryMs, persistenceLagMs: lag.lagMs, workers: lag.workers, mapClients: d.mapClients ? d.mapClients() : null,
    };
    return { status: 200, body, headers: { 'cache-control': 'no-store' } };
  }));
}
