import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import type { StagedPing } from './entry.js';
import { isDataError } from './errors.js';

export type PersistMode = 'window' | 'raw';

export interface WriteResult {
  /** Pings seen for the first time (not already persisted by an earlier flush or worker). */
  fresh: number;
  /** positions rows inserted or updated. */
  positions: number;
  /** cell_stats rows inserted or updated. */
  cellStats: number;
  /**
   * Milliseconds per step, for logs and tuning. Window mode: copy, agg, new, lock, ledger (only
   * when keys are checked one by one), update, positions, cells; raw mode: fast (the direct COPY
   * into positions), cells; or, when the batch cannot take the fast path or its COPY met an
   * existing key: [fast (the attempt),] copy, raw, conflicts, cells.
   */
  steps: Record<string, number>;
}

/**
 * Session temp tables (one set per pooled connection, emptied at every commit). Raw mode:
 * gf_stage receives the COPY (one row per ping), gf_fresh/gf_conf the pings of the rare
 * conflict path. Window mode: gf_sub receives the COPY (one row per entity, window and cell,
 * the pings as parallel arrays), gf_agg its aggregates, gf_slow the ledgers of windows that
 * may already hold some of the batch's keys, gf_changed the window states this flush touched.
 * Raw mode's fast path (every ping new): gf_cell, one row per cell window with the pings'
 * speeds, lon and lat as arrays, and gf_cell_ent, its distinct entities.
 */
const TEMP_TABLES = `
CREATE TEMP TABLE IF NOT EXISTS gf_stage (
  tenant text, entity_id text, ts timestamptz, seq bigint, lon float8, lat float8,
  speed float8, heading float8, accuracy float8, kind text, status text,
  cell text, cz smallint, cx integer, cy integer, win timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_fresh (LIKE gf_stage) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_conf (LIKE gf_stage) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_changed (
  tenant text, entity_id text, win timestamptz, ping_count integer, speed_sum numeric,
  speed_n integer, last_ts timestamptz, last_seq bigint, prev_ts timestamptz, prev_seq bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_sub (
  tenant text, entity_id text, win timestamptz, cell text, cz smallint, cx integer, cy integer,
  off integer[], seq bigint[], speed float8[], lon float8[], lat float8[],
  w_min_ts timestamptz, w_min_seq bigint, w_last_ts timestamptz, w_last_seq bigint,
  l_ts timestamptz, l_seq bigint, l_lon float8, l_lat float8, l_speed float8, l_heading float8, l_accuracy float8, l_kind text, l_status text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_agg (
  tenant text, entity_id text, win timestamptz, cell text, cz smallint, cx integer, cy integer,
  n integer, ssum numeric, sn integer, smax real, lonsum numeric, latsum numeric,
  min_lon float8, min_lat float8, max_lon float8, max_lat float8,
  w_last_ts timestamptz, w_last_seq bigint, off integer[], seq bigint[]
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_slow (tenant text, entity_id text, win timestamptz, key_off integer[], key_seq bigint[]) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_cell (
  tenant text, cell text, cz smallint, cx integer, cy integer, win timestamptz, n integer, sn integer, smax float8,
  min_lon float8, min_lat float8, max_lon float8, max_lat float8, ssum numeric, lonsum numeric, latsum numeric,
  speed float8[], lon float8[], lat float8[]
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS gf_cell_ent (tenant text, cell text, win timestamptz, entity_id text) ON COMMIT DELETE ROWS;
CREATE INDEX IF NOT EXISTS gf_changed_key ON gf_changed (tenant, entity_id, win);
CREATE INDEX IF NOT EXISTS gf_slow_key ON gf_slow (tenant, entity_id, win);`;

/**
 * Window mode, per (entity, window, cell) group: ping count and exact sums (numeric, in any
 * order), max speed and extent, from the group's arrays. `%WHERE%`: all groups, or those of
 * the windows whose keys were filtered against their ledger.
 */
const SQL_AGG = `
INSERT INTO gf_agg
SELECT s.tenant, s.entity_id, s.win, s.cell, s.cz, s.cx, s.cy, a.*, s.w_last_ts, s.w_last_seq, s.off, s.seq
FROM gf_sub s CROSS JOIN LATERAL (
  SELECT count(*)::int, coalesce(sum(u.speed::numeric), 0), count(u.speed)::int, max(u.speed)::real,
         sum(u.lon::numeric), sum(u.lat::numeric), min(u.lon), min(u.lat), max(u.lon), max(u.lat)
  FROM unnest(s.speed, s.lon, s.lat) u(speed, lon, lat)
) a %WHERE%`;
const IN_SLOW = (t: string): string => `EXISTS (SELECT 1 FROM gf_slow w WHERE w.tenant = ${t}.tenant AND w.entity_id = ${t}.entity_id AND w.win = ${t}.win)`;
const NOT_CHANGED = (t: string): string => `NOT EXISTS (SELECT 1 FROM gf_changed c WHERE c.tenant = ${t}.tenant AND c.entity_id = ${t}.entity_id AND c.win = ${t}.win)`;

/**
 * Window totals of the batch: counts and sums, the greatest key (every group of a window
 * carries it) and the keys, from gf_agg (`where`: which windows, %T% = the table alias).
 */
const WINDOW_TOTALS = (where: string): string => `
w AS (
  SELECT a.tenant, a.entity_id, a.win, sum(a.n)::int AS n, sum(a.ssum) AS ssum, sum(a.sn)::int AS sn,
         min(a.w_last_ts) AS last_ts, min(a.w_last_seq) AS last_seq, gf_array_cat(a.off) AS off, gf_array_cat(a.seq) AS seq
  FROM gf_agg a ${where.replaceAll('%T%', 'a')} GROUP BY 1, 2, 3
)`;

/**
 * Window mode, step 1: windows nobody wrote yet get their final state at once (every key of
 * the batch is new to them), with their ledger: the keys (ts − win, seq) counted. A window
 * another transaction is inserting makes this wait, then conflict (it exists). Sorted by key:
 * concurrent workers take these locks in the same order.
 */
const SQL_WINDOW_NEW = `
WITH ${WINDOW_TOTALS('')}, ins AS (
  INSERT INTO track_windows AS t (tenant, entity_id, win, ping_count, speed_sum, speed_n, last_ts, last_seq, prev_ts, prev_seq, key_off, key_seq)
  SELECT w.tenant, w.entity_id, w.win, w.n, w.ssum, w.sn, w.last_ts, w.last_seq, NULL, NULL, w.off, w.seq
  FROM w ORDER BY 1, 2, 3
  ON CONFLICT DO NOTHING
  RETURNING t.tenant, t.entity_id, t.win, t.ping_count, t.speed_sum, t.speed_n, t.last_ts, t.last_seq, t.prev_ts, t.prev_seq
)
INSERT INTO gf_changed SELECT * FROM ins`;

/**
 * Step 2: lock the windows that already existed (sorted), then read their state: a window
 * whose greatest counted key is below every key of the batch cannot hold any of them (the
 * usual case: pings arrive in order); the others' ledgers go to gf_slow, to be checked key by key.
 */
const SQL_WINDOW_LOCK = `
WITH l AS (
  SELECT t.tenant, t.entity_id, t.win, t.last_ts, t.last_seq, t.key_off, t.key_seq, g.w_min_ts, g.w_min_seq
  FROM (SELECT DISTINCT tenant, entity_id, win, w_min_ts, w_min_seq FROM gf_sub s WHERE ${NOT_CHANGED('s')}) g
  JOIN track_windows t ON t.tenant = g.tenant AND t.entity_id = g.entity_id AND t.win = g.win
  ORDER BY t.tenant, t.entity_id, t.win
  FOR UPDATE OF t
)
INSERT INTO gf_slow SELECT tenant, entity_id, win, key_off, key_seq FROM l WHERE (w_min_ts, w_min_seq) <= (last_ts, last_seq)`;

/** The slow windows' ledgers, for the key-by-key check in JS. */
const SQL_SLOW_LEDGERS = `
SELECT tenant, entity_id, (extract(epoch FROM win) * 1000)::bigint AS win, array_to_string(key_off, ',') AS off, array_to_string(key_seq, ',') AS seq FROM gf_slow`;

/**
 * Step 3: the existing windows (locked) take the batch's fresh pings: counts and sums add,
 * the greatest key wins, the keys join the ledger; prev_ts/prev_seq = the latest fix before.
 */
const SQL_WINDOW_UPDATE = `
WITH ${WINDOW_TOTALS(`WHERE ${NOT_CHANGED('%T%')}`)}, up AS (
  UPDATE track_windows t SET
    ping_count = t.ping_count + w.n,
    speed_sum = t.speed_sum + w.ssum,
    speed_n = t.speed_n + w.sn,
    prev_ts = t.last_ts,
    prev_seq = t.last_seq,
    last_ts = CASE WHEN (w.last_ts, w.last_seq) > (t.last_ts, t.last_seq) THEN w.last_ts ELSE t.last_ts END,
    last_seq = CASE WHEN (w.last_ts, w.last_seq) > (t.last_ts, t.last_seq) THEN w.last_seq ELSE t.last_seq END,
    key_off = t.key_off || w.off,
    key_seq = t.key_seq || w.seq
  FROM w
  WHERE t.tenant = w.tenant AND t.entity_id = w.entity_id AND t.win = w.win
  RETURNING t.tenant, t.entity_id, t.win, t.ping_count, t.speed_sum, t.speed_n, t.last_ts, t.last_seq, t.prev_ts, t.prev_seq
)
INSERT INTO gf_changed SELECT * FROM up`;

const MEAN = 'CASE WHEN c.speed_n > 0 THEN (c.speed_sum / c.speed_n)::real END';

/**
 * Window mode, step 4: the window's row is its latest fix; drop the row of a superseded
 * latest fix (by primary key: prev_ts is what the window held before this flush).
 */
const SQL_WINDOW_DELETE = `
DELETE FROM positions p USING gf_changed c
WHERE c.prev_ts IS NOT NULL AND c.prev_ts <> c.last_ts
  AND p.tenant = c.tenant AND p.entity_id = c.entity_id AND p.ts = c.prev_ts`;

const SQL_WINDOW_UPSERT = `
INSERT INTO positions AS p (tenant, entity_id, ts, seq, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed)
SELECT f.tenant, f.entity_id, f.l_ts, nullif(f.l_seq, -1), ST_SetSRID(ST_MakePoint(f.l_lon, f.l_lat), 4326), f.l_speed, f.l_heading, f.l_accuracy,
       f.l_kind, f.l_status, f.cell, c.ping_count, ${MEAN}
FROM gf_changed c JOIN gf_sub f
  ON f.tenant = c.tenant AND f.entity_id = c.entity_id AND f.win = c.win AND f.l_ts = c.last_ts AND f.l_seq = c.last_seq
WHERE c.prev_ts IS NULL OR (c.prev_ts, c.prev_seq) <> (c.last_ts, c.last_seq)
ORDER BY 1, 2, 3
ON CONFLICT (tenant, entity_id, ts) DO UPDATE SET
  seq = excluded.seq, geom = excluded.geom, speed = excluded.speed, heading = excluded.heading, accuracy = excluded.accuracy,
  kind = excluded.kind, status = excluded.status, cell = excluded.cell, ping_count = excluded.ping_count, mean_speed = excluded.mean_speed`;

/** Window mode, step 5: windows whose latest fix is unchanged only get new counts (by primary key). */
const SQL_WINDOW_COUNTS = `
UPDATE positions p SET ping_count = c.ping_count, mean_speed = ${MEAN}
FROM gf_changed c
WHERE c.prev_ts = c.last_ts AND c.prev_seq = c.last_seq
  AND p.tenant = c.tenant AND p.entity_id = c.entity_id AND p.ts = c.last_ts`;

/** Primary-key lookups into positions: never let a stale row estimate pick a hash join over a full scan. */
const PK_JOINS_ONLY = 'SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off';
const ALL_JOINS = 'SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on';

/**
 * Raw mode: one row per (tenant, entity, ts). Pings sharing a ts (different seq) share the
 * row: the highest seq gives the fix, ping_count counts them all.
 */
const SQL_RAW = `
WITH g AS (
  SELECT tenant, entity_id, ts, count(*)::int AS n, avg(speed) AS mean FROM gf_fresh GROUP BY 1, 2, 3
), l AS (
  SELECT DISTINCT ON (tenant, entity_id, ts) * FROM gf_fresh ORDER BY tenant, entity_id, ts, seq DESC
)
INSERT INTO positions AS p (tenant, entity_id, ts, seq, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed)
SELECT l.tenant, l.entity_id, l.ts, nullif(l.seq, -1), ST_SetSRID(ST_MakePoint(l.lon, l.lat), 4326), l.speed, l.heading, l.accuracy,
       l.kind, l.status, l.cell, g.n, g.mean
FROM l JOIN g USING (tenant, entity_id, ts) ORDER BY 1, 2, 3
ON CONFLICT (tenant, entity_id, ts) DO UPDATE SET
  seq = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.seq ELSE p.seq END,
  geom = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.geom ELSE p.geom END,
  speed = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.speed ELSE p.speed END,
  heading = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.heading ELSE p.heading END,
  accuracy = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.accuracy ELSE p.accuracy END,
  kind = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.kind ELSE p.kind END,
  status = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.status ELSE p.status END,
  cell = CASE WHEN coalesce(excluded.seq, -1) > coalesce(p.seq, -1) THEN excluded.cell ELSE p.cell END,
  ping_count = p.ping_count + excluded.ping_count,
  mean_speed = CASE WHEN p.mean_speed IS NULL THEN excluded.mean_speed WHEN excluded.mean_speed IS NULL THEN p.mean_speed
    ELSE ((p.mean_speed * p.ping_count + excluded.mean_speed * excluded.ping_count) / (p.ping_count + excluded.ping_count))::real END`;

/**
 * Raw mode, step 1: positions itself is the ledger. A row holding ONE ping (ping_count = 1) IS
 * that ping's record: (tenant, entity, ts, seq). Usually every key is new and this insert is
 * the whole write; the pings it inserted are fresh.
 */
const SQL_RAW_INSERT = `
INSERT INTO positions (tenant, entity_id, ts, seq, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed)
SELECT l.tenant, l.entity_id, l.ts, nullif(l.seq, -1), ST_SetSRID(ST_MakePoint(l.lon, l.lat), 4326), l.speed, l.heading, l.accuracy,
       l.kind, l.status, l.cell, 1, l.speed
FROM gf_stage l
ON CONFLICT DO NOTHING`;

/**
 * Raw mode, rare case (redelivery, a duplicate through two gateways, two pings sharing a ts):
 * the staged pings that did not get a row of their own in step 1. A row this transaction
 * inserted carries our xmin and the seq of the ping it holds.
 */
const SQL_RAW_CONFLICTS = `
INSERT INTO gf_conf SELECT s.* FROM gf_stage s JOIN positions p USING (tenant, entity_id, ts)
WHERE NOT (p.xmin::text = (txid_current() % 4294967296)::text AND coalesce(p.seq, -1) = s.seq)
  AND p.ts >= (SELECT min(ts) FROM gf_stage) AND p.ts <= (SELECT max(ts) FROM gf_stage)`;

/**
 * A key that ever had a conflict keeps every ping of its row in ping_log: first record the
 * row's own ping (a committed or our own row with ping_count = 1 holds exactly the ping
 * (key, seq); rows with more pings already have all of them logged), then the conflicting
 * pings that go in for the first time are fresh.
 */
const SQL_RAW_LOG_ROWS = `
INSERT INTO ping_log (tenant, entity_id, ts, seq)
SELECT p.tenant, p.entity_id, p.ts, coalesce(p.seq, -1)
FROM positions p JOIN (SELECT DISTINCT tenant, entity_id, ts FROM gf_conf) k USING (tenant, entity_id, ts)
WHERE p.ts >= (SELECT min(ts) FROM gf_conf) AND p.ts <= (SELECT max(ts) FROM gf_conf)
ORDER BY 1, 2, 3, 4
ON CONFLICT DO NOTHING`;

const SQL_RAW_LOG_CONFLICTS = `
WITH l AS (
  INSERT INTO ping_log (tenant, entity_id, ts, seq) SELECT tenant, entity_id, ts, seq FROM gf_conf ORDER BY 1, 2, 3, 4
  ON CONFLICT DO NOTHING RETURNING tenant, entity_id, ts, seq
)
INSERT INTO gf_fresh SELECT c.* FROM gf_conf c JOIN l USING (tenant, entity_id, ts, seq)`;

/** After the merge: every fresh ping of the flush (those with a row of their own + fresh conflicts), for the cells. */
const SQL_RAW_FRESH_REST = `
INSERT INTO gf_fresh SELECT s.* FROM gf_stage s
WHERE NOT EXISTS (SELECT 1 FROM gf_conf c WHERE c.tenant = s.tenant AND c.entity_id = s.entity_id AND c.ts = s.ts AND c.seq = s.seq)`;

/**
 * Cell aggregates: exact increments from fresh pings; distinct entities via
 * cell_window_entities (its insert returns the entities new to a cell window). `ent`: the
 * (tenant, cell, win, entity) of the fresh pings; `agg`: their sums per cell window.
 */
const cellsSql = (ent: string, agg: string): string => `
WITH ent AS (
  INSERT INTO cell_window_entities (tenant, cell, win, entity_id)
  ${ent} ORDER BY 1, 2, 3, 4
  ON CONFLICT DO NOTHING
  RETURNING tenant, cell, win
), newent AS (
  SELECT tenant, cell, win, count(*)::int AS k FROM ent GROUP BY 1, 2, 3
), agg AS (${agg})
INSERT INTO cell_stats AS s (tenant, cell, cz, cx, cy, win, ping_count, entity_count, speed_sum, speed_n, speed_max,
                             lon_sum, lat_sum, min_lon, min_lat, max_lon, max_lat)
SELECT a.tenant, a.cell, a.cz, a.cx, a.cy, a.win, a.n, coalesce(e.k, 0), a.ssum, a.sn, a.smax,
       a.lonsum, a.latsum, a.min_lon, a.min_lat, a.max_lon, a.max_lat
FROM agg a LEFT JOIN newent e USING (tenant, cell, win) ORDER BY 1, 2, 6
ON CONFLICT (tenant, cell, win) DO UPDATE SET
  ping_count = s.ping_count + excluded.ping_count,
  entity_count = s.entity_count + excluded.entity_count,
  speed_sum = s.speed_sum + excluded.speed_sum,
  speed_n = s.speed_n + excluded.speed_n,
  speed_max = greatest(s.speed_max, excluded.speed_max),
  lon_sum = s.lon_sum + excluded.lon_sum,
  lat_sum = s.lat_sum + excluded.lat_sum,
  min_lon = least(s.min_lon, excluded.min_lon), min_lat = least(s.min_lat, excluded.min_lat),
  max_lon = greatest(s.max_lon, excluded.max_lon), max_lat = greatest(s.max_lat, excluded.max_lat)`;

/** Raw mode: from the fresh pings, one row each. */
const SQL_CELLS = cellsSql('SELECT DISTINCT tenant, cell, win, entity_id FROM gf_fresh', `
  SELECT tenant, cell, min(cz) AS cz, min(cx) AS cx, min(cy) AS cy, win, count(*)::int AS n,
         coalesce(sum(speed::numeric), 0) AS ssum, count(speed)::int AS sn, max(speed)::real AS smax,
         sum(lon::numeric) AS lonsum, sum(lat::numeric) AS latsum,
         min(lon) AS min_lon, min(lat) AS min_lat, max(lon) AS max_lon, max(lat) AS max_lat
  FROM gf_fresh GROUP BY tenant, cell, win`);

/** Window mode: from the per (entity, window, cell) aggregates of the fresh pings. */
const SQL_WINDOW_CELLS = cellsSql('SELECT tenant, cell, win, entity_id FROM gf_agg', `
  SELECT tenant, cell, min(cz) AS cz, min(cx) AS cx, min(cy) AS cy, win, sum(n)::int AS n,
         sum(ssum) AS ssum, sum(sn)::int AS sn, max(smax) AS smax, sum(lonsum) AS lonsum, sum(latsum) AS latsum,
         min(min_lon) AS min_lon, min(min_lat) AS min_lat, max(max_lon) AS max_lon, max(max_lat) AS max_lat
  FROM gf_agg GROUP BY tenant, cell, win`);

/**
 * Raw mode's fast path: from one row per cell window (gf_cell, computed in JS: counts, max,
 * extent and the exact numeric sums — see DecimalSum) and its distinct entities. A cell window
 * with a value whose `float8::numeric` JS does not reproduce (see numericParts) comes with the
 * values as arrays instead, summed here as SQL_CELLS does.
 */
const SQL_FAST_CELLS = cellsSql('SELECT tenant, cell, win, entity_id FROM gf_cell_ent', `
  SELECT c.tenant, c.cell, c.cz, c.cx, c.cy, c.win, c.n,
         coalesce(c.ssum, (SELECT coalesce(sum(x::numeric), 0) FROM unnest(c.speed) x)) AS ssum, c.sn, c.smax::real AS smax,
         coalesce(c.lonsum, (SELECT sum(x::numeric) FROM unnest(c.lon) x)) AS lonsum,
         coalesce(c.latsum, (SELECT sum(x::numeric) FROM unnest(c.lat) x)) AS latsum,
         c.min_lon, c.min_lat, c.max_lon, c.max_lat
  FROM gf_cell c`);

const esc = (s: string): string => s.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
const opt = (v: number | string | null): string => (v === null ? '\\N' : typeof v === 'string' ? esc(v) : String(v));

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/**
 * One ping per key (tenant, entity, ts, seq) — a key IS a ping: when two entries share it the
 * first persisted wins — sorted by key. Grouped by entity first (string compares only between
 * entities, numeric ones inside), stable, so the first of equal keys is kept.
 */
export function uniqueSorted(pings: readonly StagedPing[]): StagedPing[] {
  const groups = new Map<string, StagedPing[]>();
  for (const p of pings) {
    const k = `${p.tenant}\u0000${p.id}`;
    const g = groups.get(k);
    if (g) g.push(p); else groups.set(k, [p]);
  }
  const order = [...groups.values()].sort((a, b) => cmp(a[0]!.tenant, b[0]!.tenant) || cmp(a[0]!.id, b[0]!.id));
  const out: StagedPing[] = [];
  for (const g of order) {
    if (g.length > 1) g.sort((a, b) => a.ts - b.ts || a.seq - b.seq);
    let prev: StagedPing | undefined;
    for (const p of g) {
      if (prev && prev.ts === p.ts && prev.seq === p.seq) continue;
      out.push(p);
      prev = p;
    }
  }
  return out;
}

/** ISO-8601 of a ms timestamp; the part up to the second is cached (many pings share it). */
const isoSeconds = new Map<number, string>();
export function isoMs(ms: number): string {
  const sec = Math.floor(ms / 1000);
  let head = isoSeconds.get(sec);
  if (head === undefined) {
    if (isoSeconds.size > 50_000) isoSeconds.clear();
    head = new Date(sec * 1000).toISOString().slice(0, -4);
    isoSeconds.set(sec, head);
  }
  const f = ms - sec * 1000;
  return `${head}${f < 10 ? '00' : f < 100 ? '0' : ''}${f}Z`;
}

/** One COPY text-format line per ping. */
export function copyLine(p: StagedPing): string {
  return `${p.tenant}\t${p.id}\t${isoMs(p.ts)}\t${p.seq}\t${p.lon}\t${p.lat}\t${opt(p.speed)}\t${opt(p.heading)}\t${opt(p.accuracy)}\t${opt(p.kind)}\t${opt(p.status)}\t${p.cell}\t${p.cz}\t${p.cx}\t${p.cy}\t${isoMs(p.win)}\n`;
}

function* chunks<T>(items: readonly T[], line: (x: T) => string, size = 2000): Generator<string> {
  for (let i = 0; i < items.length; i += size) {
    let s = '';
    for (let j = i; j < Math.min(items.length, i + size); j++) s += line(items[j]!);
    yield s;
  }
}

/** The pings of one entity in one window, sorted by (ts, seq), unique. */
export interface WindowGroup { tenant: string; id: string; win: number; pings: StagedPing[] }

/** Windows of a batch that is unique and sorted by key (uniqueSorted): contiguous runs. */
export function windowGroups(unique: readonly StagedPing[]): WindowGroup[] {
  const out: WindowGroup[] = [];
  let g: WindowGroup | undefined;
  for (const p of unique) {
    if (!g || g.win !== p.win || g.id !== p.id || g.tenant !== p.tenant) out.push((g = { tenant: p.tenant, id: p.id, win: p.win, pings: [] }));
    g.pings.push(p);
  }
  return out;
}

const arr = (xs: (number | null)[]): string => `{${xs.map((x) => (x === null ? 'NULL' : String(x))).join(',')}}`;

/**
 * COPY lines of one window (gf_sub): one per cell its pings fall in, each with the pings'
 * keys and values as parallel arrays and the latest fix of that cell; every line carries the
 * window's lowest and greatest key. `keep`: only these pings (the fresh ones of a window
 * whose ledger already holds some keys of the batch); none kept → no line.
 */
export function windowLines(g: WindowGroup, keep?: (p: StagedPing) => boolean): string {
  const pings = keep ? g.pings.filter(keep) : g.pings;
  if (pings.length === 0) return '';
  const first = pings[0]!, last = pings[pings.length - 1]!;
  const byCell = new Map<string, StagedPing[]>();
  for (const p of pings) {
    const c = byCell.get(p.cell);
    if (c) c.push(p); else byCell.set(p.cell, [p]);
  }
  const head = `${g.tenant}\t${g.id}\t${isoMs(g.win)}`;
  const win = `${isoMs(first.ts)}\t${first.seq}\t${isoMs(last.ts)}\t${last.seq}`;
  let s = '';
  for (const [cell, ps] of byCell) {
    const l = ps[ps.length - 1]!;
    s += `${head}\t${cell}\t${l.cz}\t${l.cx}\t${l.cy}\t${arr(ps.map((p) => p.ts - g.win))}\t${arr(ps.map((p) => p.seq))}\t`
      + `${arr(ps.map((p) => p.speed))}\t${arr(ps.map((p) => p.lon))}\t${arr(ps.map((p) => p.lat))}\t${win}\t`
      + `${isoMs(l.ts)}\t${l.seq}\t${l.lon}\t${l.lat}\t${opt(l.speed)}\t${opt(l.heading)}\t${opt(l.accuracy)}\t${opt(l.kind)}\t${opt(l.status)}\n`;
  }
  return s;
}

const copyInto = (client: pg.PoolClient, table: string, lines: Iterable<string>): Promise<void> =>
  pipeline(Readable.from(lines), client.query(copyStreams.from(`COPY ${table} FROM STDIN`)));

const EMPTY_RESULT = (steps: Record<string, number>): WriteResult => ({ fresh: 0, positions: 0, cellStats: 0, steps });

/**
 * Writes one batch inside the caller's transaction: COPY into a session staging table, then
 * set-based INSERT … SELECT … ON CONFLICT. Rows depend only on the set of pings ever written
 * (see docs/persistence.md), never on how they were batched or retried.
 */
export interface WriteOptions {
  /** Raw mode: try the direct COPY into positions first (default true; false: tests compare both paths). */
  rawFastPath?: boolean;
}

export async function writeBatch(client: pg.PoolClient, pings: readonly StagedPing[], mode: PersistMode, o: WriteOptions = {}): Promise<WriteResult> {
  const steps: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string): void => { const now = performance.now(); steps[name] = Math.round(now - t); t = now; };
  if (pings.length === 0) return EMPTY_RESULT(steps);
  const unique = uniqueSorted(pings);
  await client.query(TEMP_TABLES);
  if (mode === 'window') return writeWindows(client, unique, steps, lap);
  if ((o.rawFastPath ?? true) && fastPathFits(unique)) {
    const res = await writeRawFast(client, unique, steps, lap);
    if (res) return res;
  }
  return writeRaw(client, unique, steps, lap);
}

/** hex EWKB of ST_SetSRID(ST_MakePoint(lon, lat), 4326): little endian, type Point with the SRID flag, SRID 4326. */
const EWKB_POINT_4326 = '0101000020e6100000';
const ewkbXY = Buffer.alloc(16);
/** float8 as the staged path reads it: float8in(String(x)) is x, but String(-0) is "0". */
const f8 = (x: number): number => (x === 0 ? 0 : x);
export function ewkbPoint(lon: number, lat: number): string {
  ewkbXY.writeDoubleLE(f8(lon), 0);
  ewkbXY.writeDoubleLE(f8(lat), 8);
  return EWKB_POINT_4326 + ewkbXY.toString('hex');
}

/**
 * A `real` column given as text: the float4 nearest to the double, printed so that float4in
 * reads exactly it — what the staged path's float8 → real cast stores (no double rounding
 * through the decimal text). realFits: a value that cast accepts and that is not subnormal;
 * anything else keeps the batch on the staged path (and its errors).
 */
const real = (v: number | null): string => (v === null ? '\\N' : String(Math.fround(v)));
const FLT_MIN = 1.1754943508222875e-38;
const realFits = (v: number | null): boolean => {
  if (v === null || v === 0) return true;
  const f = Math.abs(Math.fround(v));
  return f >= FLT_MIN && f !== Infinity;
};

const POSITION_COLUMNS = 'tenant, entity_id, ts, seq, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed';

/** One COPY line of positions: exactly the row SQL_RAW_INSERT makes of the ping. */
export function positionLine(p: StagedPing): string {
  const speed = real(p.speed);
  return `${p.tenant}\t${p.id}\t${isoMs(p.ts)}\t${p.seq === -1 ? '\\N' : p.seq}\t${ewkbPoint(p.lon, p.lat)}\t${speed}\t${real(p.heading)}\t${real(p.accuracy)}\t`
    + `${opt(p.kind)}\t${opt(p.status)}\t${p.cell}\t1\t${speed}\n`;
}

/**
 * The fast path can only succeed when no two pings of the batch share a row (same tenant,
 * entity and ts: uniqueSorted puts them side by side) and every real value is accepted.
 */
function fastPathFits(unique: readonly StagedPing[]): boolean {
  let prev: StagedPing | undefined;
  for (const p of unique) {
    if (prev && prev.ts === p.ts && prev.id === p.id && prev.tenant === p.tenant) return false;
    if (!realFits(p.speed) || !realFits(p.heading) || !realFits(p.accuracy)) return false;
    prev = p;
  }
  return true;
}

/**
 * A float8 as PostgreSQL's `float8::numeric` reads it — printf `%.15g`: 15 significant digits,
 * ties to even, trailing zeros dropped — as [m, d]: the value m / 10^d, with d its scale
 * (`numeric` keeps it: a sum's scale is the largest of its terms'). JS's shortest round-trip
 * text is that decimal when it has at most 15 significant digits (it is then the 15-digit
 * decimal nearest to the double: 15-digit steps are more than 4 ulps apart); with 16 or 17,
 * toPrecision(15) rounds the exact binary value, as printf does, except on an exact tie
 * (toPrecision rounds it up, printf to even): a 16-digit text ending in 5 that is the double
 * exactly. That case, exponent forms (below 1e-6, above 1e21, or 15-digit rounding at or
 * above 1e15) give undefined: the caller lets SQL convert those.
 */
export function numericParts(v: number): [number, number] | undefined {
  let s = String(v);
  if (s.includes('e')) return undefined;
  let sig = 0, lead = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) continue; // sign, point
    if (lead && c === 48) continue;
    lead = false;
    sig++;
  }
  if (sig > 15) {
    if (sig === 16 && s.endsWith('5') && exactDecimal(s)) return undefined;
    s = v.toPrecision(15);
    if (s.includes('e')) return undefined;
    if (s.includes('.')) s = s.replace(/\.?0+$/, '');
  }
  const neg = s.charCodeAt(0) === 45;
  const body = neg ? s.slice(1) : s;
  const dot = body.indexOf('.');
  const m = Number(dot < 0 ? body : body.slice(0, dot) + body.slice(dot + 1));
  return [neg ? -m : m, dot < 0 ? 0 : body.length - dot - 1];
}

/** Whether a decimal text (no exponent) can be a double exactly: its value N / 10^k is dyadic, i.e. 5^k divides N. */
function exactDecimal(s: string): boolean {
  const body = s.replace('-', '');
  const dot = body.indexOf('.');
  if (dot < 0) return true;
  const k = body.length - dot - 1;
  return BigInt(body.slice(0, dot) + body.slice(dot + 1)) % 5n ** BigInt(k) === 0n;
}

/**
 * Exact sum of numericParts terms, as `numeric` text with the largest scale of its terms (what
 * `sum(x::numeric)` prints). Per scale, the integer terms are split at 10^8 and both halves
 * summed as doubles (exact below 2^53: about 10^7 terms); BigInt only at the end.
 */
export class DecimalSum {
  private readonly hi: number[] = [];
  private readonly lo: number[] = [];
  add([m, d]: [number, number]): void {
    while (this.hi.length <= d) { this.hi.push(0); this.lo.push(0); }
    const h = Math.trunc(m / 1e8);
    this.hi[d]! += h;
    this.lo[d]! += m - h * 1e8;
  }
  /** undefined when nothing was added. */
  text(): string | undefined {
    const scale = this.hi.length - 1;
    if (scale < 0) return undefined;
    let total = 0n;
    for (let d = 0; d <= scale; d++) total += (BigInt(this.hi[d]!) * 100_000_000n + BigInt(this.lo[d]!)) * 10n ** BigInt(scale - d);
    const neg = total < 0n;
    const digits = (neg ? -total : total).toString().padStart(scale + 1, '0');
    const int = digits.slice(0, digits.length - scale);
    return `${neg ? '-' : ''}${int}${scale > 0 ? `.${digits.slice(digits.length - scale)}` : ''}`;
  }
}

/** One cell window of a batch whose pings are all fresh: what SQL_CELLS aggregates, computed in JS. */
export interface CellWindow {
  tenant: string; cell: string; cz: number; cx: number; cy: number; win: number;
  n: number; smax: number | null; minLon: number; minLat: number; maxLon: number; maxLat: number;
  speed: number[]; lon: number[]; lat: number[]; entities: Set<string>;
  /** Exact sums; undefined once a value is met that numericParts does not convert (then SQL sums the arrays). */
  sums?: { speed: DecimalSum; lon: DecimalSum; lat: DecimalSum };
}

/** Cell windows of a batch of fresh pings, built ping by ping (add) while the batch is copied into positions. */
export class CellWindows {
  private readonly m = new Map<string, CellWindow>();
  add(p: StagedPing): void {
    const k = `${p.tenant}\u0000${p.cell}\u0000${p.win}`;
    const lon = f8(p.lon), lat = f8(p.lat);
    let c = this.m.get(k);
    if (!c) {
      c = { tenant: p.tenant, cell: p.cell, cz: p.cz, cx: p.cx, cy: p.cy, win: p.win, n: 0, smax: null,
        minLon: lon, minLat: lat, maxLon: lon, maxLat: lat, speed: [], lon: [], lat: [], entities: new Set(),
        sums: { speed: new DecimalSum(), lon: new DecimalSum(), lat: new DecimalSum() } };
      this.m.set(k, c);
    }
    c.n++;
    const speed = p.speed === null ? null : f8(p.speed);
    if (speed !== null) {
      c.speed.push(speed);
      if (c.smax === null || speed > c.smax) c.smax = speed;
    }
    c.lon.push(lon);
    c.lat.push(lat);
    if (lon < c.minLon) c.minLon = lon;
    if (lon > c.maxLon) c.maxLon = lon;
    if (lat < c.minLat) c.minLat = lat;
    if (lat > c.maxLat) c.maxLat = lat;
    c.entities.add(p.id);
    if (c.sums) {
      const sp = speed === null ? null : numericParts(speed), lo = numericParts(lon), la = numericParts(lat);
      if (sp === undefined || lo === undefined || la === undefined) c.sums = undefined;
      else {
        if (sp !== null) c.sums.speed.add(sp);
        c.sums.lon.add(lo);
        c.sums.lat.add(la);
      }
    }
  }
  list(): CellWindow[] { return [...this.m.values()]; }
}

/** gf_cell line: the exact sums when JS has them (arrays left NULL), else the arrays for SQL to sum. */
const cellLine = (c: CellWindow): string => {
  const head = `${c.tenant}\t${c.cell}\t${c.cz}\t${c.cx}\t${c.cy}\t${isoMs(c.win)}\t${c.n}\t${c.speed.length}\t${c.smax ?? '\\N'}\t`
    + `${c.minLon}\t${c.minLat}\t${c.maxLon}\t${c.maxLat}\t`;
  return c.sums
    ? `${head}${c.sums.speed.text() ?? '0'}\t${c.sums.lon.text()}\t${c.sums.lat.text()}\t\\N\t\\N\t\\N\n`
    : `${head}\\N\t\\N\t\\N\t${arr(c.speed)}\t${arr(c.lon)}\t${arr(c.lat)}\n`;
};

const cellEntityLines = (c: CellWindow): string => {
  const head = `${c.tenant}\t${c.cell}\t${isoMs(c.win)}\t`;
  let s = '';
  for (const e of c.entities) s += `${head}${e}\n`;
  return s;
};

/**
 * Raw mode's fast path, for the usual batch where every ping is new: a COPY straight into
 * positions of the rows SQL_RAW_INSERT would insert (the same operation as the bench's COPY
 * ceiling), under a savepoint. Success means every ping got a row of its own: all are fresh,
 * so the cell aggregates come from the batch itself (JS: counts, distinct entities, max,
 * extent; SQL: the exact sums from per-cell-window arrays), with no per-ping staging row. A
 * key that already has a row (a redelivery, a duplicate through two gateways or another
 * worker's batch) fails the COPY (23505): back to the savepoint (none of its rows is left),
 * RELEASE it — the staged path identifies its own rows by the top-level xid, so it must not
 * run inside the subtransaction — and undefined: the caller takes the staged path. Any other
 * data error also falls back, so the staged path decides the batch's fate as before.
 */
async function writeRawFast(client: pg.PoolClient, unique: StagedPing[], steps: Record<string, number>, lap: (name: string) => void): Promise<WriteResult | undefined> {
  await client.query('SAVEPOINT gf_fast');
  // The cell windows are built while PostgreSQL takes the COPY (this process would wait anyway).
  const cells = new CellWindows();
  try {
    await copyInto(client, `positions (${POSITION_COLUMNS})`, chunks(unique, (p) => { cells.add(p); return positionLine(p); }));
  } catch (err) {
    if (!isDataError(err)) throw err;
    await client.query('ROLLBACK TO SAVEPOINT gf_fast; RELEASE SAVEPOINT gf_fast');
    lap('fast');
    return undefined;
  }
  await client.query('RELEASE SAVEPOINT gf_fast');
  lap('fast');
  const list = cells.list();
  await copyInto(client, 'gf_cell', chunks(list, cellLine, 200));
  await copyInto(client, 'gf_cell_ent', chunks(list, cellEntityLines, 200));
  const cellStats = (await client.query(SQL_FAST_CELLS)).rowCount ?? 0;
  lap('cells');
  return { fresh: unique.length, positions: unique.length, cellStats, steps };
}

/**
 * Raw mode's staged path: COPY into gf_stage, INSERT … ON CONFLICT DO NOTHING into positions,
 * and for the pings without a row of their own, the ping_log ledger (docs/persistence.md).
 */
async function writeRaw(client: pg.PoolClient, unique: StagedPing[], steps: Record<string, number>, lap: (name: string) => void): Promise<WriteResult> {
  await copyInto(client, 'gf_stage', chunks(unique, copyLine));
  lap('copy');
  // positions is the ledger (see SQL_RAW_INSERT): no per-ping ping_log row in the usual case.
  const inserted = (await client.query(SQL_RAW_INSERT)).rowCount ?? 0;
  let positions = inserted;
  let fresh = inserted;
  let src = 'gf_stage';
  lap('raw');
  if (inserted < unique.length) {
    await client.query(PK_JOINS_ONLY);
    const conflicts = (await client.query(SQL_RAW_CONFLICTS)).rowCount ?? 0;
    await client.query('ANALYZE gf_conf');
    await client.query(SQL_RAW_LOG_ROWS);
    const freshConflicts = (await client.query(SQL_RAW_LOG_CONFLICTS)).rowCount ?? 0;
    await client.query(ALL_JOINS);
    if (freshConflicts > 0) {
      await client.query('ANALYZE gf_fresh');
      positions += (await client.query(SQL_RAW)).rowCount ?? 0;
    }
    await client.query(SQL_RAW_FRESH_REST);
    fresh = unique.length - conflicts + freshConflicts;
    src = 'gf_fresh';
    lap('conflicts');
  }
  if (fresh === 0) return EMPTY_RESULT(steps);
  const cellStats = (await client.query(src === 'gf_fresh' ? SQL_CELLS : SQL_CELLS.replaceAll('gf_fresh', src))).rowCount ?? 0;
  lap('cells');
  return { fresh, positions, cellStats, steps };
}

/**
 * Window mode: one staged row per (entity, window, cell), no per-ping row anywhere. The
 * exactly-once record is the window's ledger (track_windows.key_off/key_seq): new windows are
 * inserted whole; existing ones are locked (sorted), and only when the batch reaches below a
 * window's greatest counted key are its keys checked one by one (in JS, against the ledger).
 */
async function writeWindows(client: pg.PoolClient, unique: StagedPing[], steps: Record<string, number>, lap: (name: string) => void): Promise<WriteResult> {
  const groups = windowGroups(unique);
  await copyInto(client, 'gf_sub', chunks(groups, (g) => windowLines(g)));
  lap('copy');
  await client.query('SET LOCAL default_statistics_target = 10');
  await client.query('ANALYZE gf_sub');
  await client.query(SQL_AGG.replace('%WHERE%', ''));
  lap('agg');
  let fresh = unique.length;
  const created = (await client.query(SQL_WINDOW_NEW)).rowCount ?? 0;
  lap('new');
  if (created < groups.length) {
    await client.query(PK_JOINS_ONLY);
    const slow = (await client.query(SQL_WINDOW_LOCK)).rowCount ?? 0;
    lap('lock');
    if (slow > 0) {
      fresh -= await dropCounted(client, groups);
      lap('ledger');
    }
    await client.query(SQL_WINDOW_UPDATE);
    await client.query(ALL_JOINS);
    lap('update');
  }
  if (fresh === 0) return EMPTY_RESULT(steps);
  await client.query('ANALYZE gf_changed');
  await client.query(PK_JOINS_ONLY);
  await client.query(SQL_WINDOW_DELETE);
  let positions = (await client.query(SQL_WINDOW_COUNTS)).rowCount ?? 0;
  await client.query(ALL_JOINS);
  positions += (await client.query(SQL_WINDOW_UPSERT)).rowCount ?? 0;
  lap('positions');
  const cellStats = (await client.query(SQL_WINDOW_CELLS)).rowCount ?? 0;
  lap('cells');
  return { fresh, positions, cellStats, steps };
}

/**
 * Windows in gf_slow (their ledger may hold keys of this batch: a redelivery, a late or
 * out-of-order ping, another worker's batch of the same window committed first): restage
 * them with only the keys their ledger does not hold. Returns how many pings were dropped.
 */
async function dropCounted(client: pg.PoolClient, groups: readonly WindowGroup[]): Promise<number> {
  const ledgers = new Map<string, Set<string>>();
  const led = await client.query<{ tenant: string; entity_id: string; win: string; off: string; seq: string }>(SQL_SLOW_LEDGERS);
  for (const r of led.rows) {
    const offs = r.off === '' ? [] : r.off.split(','), seqs = r.seq === '' ? [] : r.seq.split(',');
    ledgers.set(`${r.tenant}\u0000${r.entity_id}\u0000${r.win}`, new Set(offs.map((o, i) => `${o}:${seqs[i]}`)));
  }
  let dropped = 0;
  const lines: string[] = [];
  for (const g of groups) {
    const counted = ledgers.get(`${g.tenant}\u0000${g.id}\u0000${g.win}`);
    if (!counted) continue;
    lines.push(windowLines(g, (p) => {
      if (!counted.has(`${p.ts - g.win}:${p.seq}`)) return true;
      dropped++;
      return false;
    }));
  }
  await client.query(`DELETE FROM gf_sub s WHERE ${IN_SLOW('s')}; DELETE FROM gf_agg a WHERE ${IN_SLOW('a')}`);
  await copyInto(client, 'gf_sub', lines.filter(Boolean));
  await client.query(SQL_AGG.replace('%WHERE%', `WHERE ${IN_SLOW('s')}`));
  return dropped;
}
