/**
 * Independent model of what the persistence worker must write (used by worker-*.test.ts):
 * computed in plain TypeScript from the set of pings, without SQL.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { createKeys, cellMember } from '../../src/store/redis/keys.js';
import { encodeAccepted, STREAM_FIELD } from '../../src/store/redis/codec.js';
import { waitFor as sharedWaitFor } from '../helpers/wait.js';

export const WIN = 10_000;

export interface ExpectedRow { tenant: string; entity_id: string; ts: number; seq: number | null; lon: number; lat: number; speed: number | null; status: string | null; cell: string; ping_count: number; mean_speed: number | null }
export interface ExpectedCell { tenant: string; cell: string; win: number; ping_count: number; entity_count: number; mean_speed: number | null; max_speed: number | null; cx: number; cy: number; min_lon: number; min_lat: number; max_lon: number; max_lat: number }

const pingKey = (p: AcceptedPing): string => `${p.tenant}|${p.id}|${p.ts}|${p.seq ?? -1}`;

/**
 * How many distinct pings are persisted, in either mode: every fresh ping is counted exactly
 * once into cell_stats (raw mode has no per-ping ping_log row in the usual case: positions is
 * its ledger).
 */
export async function persistedPings(client: pg.Client): Promise<number> {
  return Number((await client.query('SELECT coalesce(sum(ping_count), 0) AS n FROM cell_stats')).rows[0].n);
}

/**
 * Keys in window mode's exactly-once record: the ledger of every window (track_windows.key_off /
 * key_seq, migration 004), one key per persisted ping. Window mode writes no ping_log rows.
 */
export async function ledgerKeys(client: pg.Client): Promise<number> {
  return Number((await client.query('SELECT coalesce(sum(cardinality(key_off)), 0) AS n FROM track_windows')).rows[0].n);
}

export function uniquePings(pings: readonly AcceptedPing[]): AcceptedPing[] {
  const m = new Map<string, AcceptedPing>();
  for (const p of pings) if (!m.has(pingKey(p))) m.set(pingKey(p), p);
  return [...m.values()];
}

const later = (a: AcceptedPing, b: AcceptedPing): boolean => a.ts > b.ts || (a.ts === b.ts && (a.seq ?? -1) > (b.seq ?? -1));
const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);

export function expectedPositions(pings: readonly AcceptedPing[], mode: 'window' | 'raw'): ExpectedRow[] {
  const groups = new Map<string, AcceptedPing[]>();
  for (const p of uniquePings(pings)) {
    const k = mode === 'window' ? `${p.tenant}|${p.id}|${p.ts - (p.ts % WIN)}` : `${p.tenant}|${p.id}|${p.ts}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(p);
  }
  const rows: ExpectedRow[] = [];
  for (const g of groups.values()) {
    const last = g.reduce((a, b) => (later(b, a) ? b : a));
    rows.push({
      tenant: last.tenant, entity_id: last.id, ts: last.ts, seq: last.seq ?? null, lon: last.lon, lat: last.lat, speed: last.speed ?? null,
      status: last.status ?? null, cell: last.cell, ping_count: g.length, mean_speed: mean(g.flatMap((p) => (p.speed === undefined ? [] : [p.speed]))),
    });
  }
  return rows.sort((a, b) => (a.entity_id < b.entity_id ? -1 : a.entity_id > b.entity_id ? 1 : 0) || a.ts - b.ts);
}

export function expectedCells(pings: readonly AcceptedPing[]): ExpectedCell[] {
  const groups = new Map<string, AcceptedPing[]>();
  for (const p of uniquePings(pings)) {
    const k = `${p.tenant}|${p.cell}|${p.ts - (p.ts % WIN)}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(p);
  }
  const out: ExpectedCell[] = [];
  for (const g of groups.values()) {
    const f = g[0]!;
    const speeds = g.flatMap((p) => (p.speed === undefined ? [] : [p.speed]));
    const [, x, y] = f.cell.split('/').map(Number) as [number, number, number];
    out.push({
      tenant: f.tenant, cell: f.cell, win: f.ts - (f.ts % WIN), ping_count: g.length, entity_count: new Set(g.map((p) => p.id)).size,
      mean_speed: mean(speeds), max_speed: speeds.length ? Math.max(...speeds) : null, cx: x, cy: y,
      min_lon: Math.min(...g.map((p) => p.lon)), min_lat: Math.min(...g.map((p) => p.lat)),
      max_lon: Math.max(...g.map((p) => p.lon)), max_lat: Math.max(...g.map((p) => p.lat)),
    });
  }
  return out.sort((a, b) => (a.cell < b.cell ? -1 : a.cell > b.cell ? 1 : 0) || a.win - b.win || (a.tenant < b.tenant ? -1 : 1));
}

/**
 * What a gateway writes for the worker: one stream entry per ping + the active-cells zset.
 * `atomic`: all in one MULTI, so a reader sees none or all of them.
 */
export async function xaddPings(redis: Redis, prefix: string, pings: readonly AcceptedPing[], o: { atomic?: boolean } = {}): Promise<void> {
  const keys = createKeys(prefix);
  const pipe = o.atomic ? redis.multi() : redis.pipeline();
  for (const p of pings) {
    pipe.xadd(keys.cell(p.tenant, p.cell).stream, '*', STREAM_FIELD, encodeAccepted(p));
    pipe.zadd(keys.activeCells, Date.now(), cellMember(p.tenant, p.cell));
  }
  await pipe.exec();
}

export async function readPositions(db: pg.Client): Promise<ExpectedRow[]> {
  const r = await db.query(`SELECT tenant, entity_id, (extract(epoch from ts) * 1000)::bigint AS ts, seq, ST_X(geom) AS lon, ST_Y(geom) AS lat,
    speed, status, cell, ping_count, mean_speed FROM positions ORDER BY entity_id COLLATE "C", ts`);
  return r.rows.map((x) => ({ ...x, ts: Number(x.ts), seq: x.seq === null ? null : Number(x.seq) }));
}

export async function readCells(db: pg.Client): Promise<ExpectedCell[]> {
  const r = await db.query(`SELECT tenant, cell, (extract(epoch from win) * 1000)::bigint AS win, ping_count, entity_count,
    CASE WHEN speed_n > 0 THEN (speed_sum / speed_n)::float8 END AS mean_speed, speed_max AS max_speed, cx, cy, min_lon, min_lat, max_lon, max_lat
    FROM cell_stats ORDER BY cell COLLATE "C", win, tenant COLLATE "C"`);
  return r.rows.map((x) => ({ ...x, win: Number(x.win) }));
}

/** Compares rows field by field; floats stored as real get a relative tolerance. */
export function assertRowsMatch<T extends object>(actual: T[], expected: T[], floatFields: (keyof T)[], what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: ${actual.length} rows, expected ${expected.length}\nactual: ${JSON.stringify(actual)}\nexpected: ${JSON.stringify(expected)}`);
  actual.forEach((a, i) => {
    const e = expected[i]!;
    for (const k of Object.keys(e) as (keyof T)[]) {
      const av = a[k] as unknown, ev = e[k] as unknown;
      if (floatFields.includes(k) && typeof ev === 'number' && typeof av === 'number') {
        if (Math.abs(av - ev) > 1e-5 * Math.max(1, Math.abs(ev))) throw new Error(`${what}[${i}].${String(k)}: ${av} != ${ev}\n${JSON.stringify(a)}\n${JSON.stringify(e)}`);
      } else if (av !== ev) {
        throw new Error(`${what}[${i}].${String(k)}: ${JSON.stringify(av)} != ${JSON.stringify(ev)}\n${JSON.stringify(a)}\n${JSON.stringify(e)}`);
      }
    }
  });
}

/** waitFor with the worker tests' defaults: 20 s, polling PostgreSQL every 100 ms. */
export function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20000, what = 'condition'): Promise<T> {
  return sharedWaitFor(fn, timeoutMs, what, 100);
}

/** The cell streams the pings went to. */
export function streamsOf(prefix: string, pings: readonly AcceptedPing[]): string[] {
  const keys = createKeys(prefix);
  return [...new Set(pings.map((p) => keys.cell(p.tenant, p.cell).stream))];
}

/** Stream entries of the pings' cells still pending (delivered, not acknowledged) in group `persist`. */
export async function pendingEntries(redis: Redis, prefix: string, pings: readonly AcceptedPing[]): Promise<number> {
  let pending = 0;
  for (const s of streamsOf(prefix, pings)) {
    pending += Number(((await redis.xpending(s, 'persist')) as [number])[0]);
  }
  return pending;
}

/** Waits until every entry of the pings' streams is acknowledged. */
export function waitNoPending(redis: Redis, prefix: string, pings: readonly AcceptedPing[], timeoutMs = 20000): Promise<true> {
  return waitFor(async () => ((await pendingEntries(redis, prefix, pings)) === 0 ? true : undefined), timeoutMs, 'no pending entries');
}
