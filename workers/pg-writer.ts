import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import type { StagedPing } from './entry.js';

export type PersistMode = 'window' | 'raw';

export interface WriteResult {
  /** Pings seen for the first time (not already persisted by an earlier flush or worker). */
  fresh: number;
  /** positions rows inserted or updated. */
  positions: number;
  /** cell_stats rows inserted or updated. */
  cellStats: number;
  /** Milliseconds per step (copy, dedup, window/raw, cells), for logs and tuning. */
  steps: Record<string, number>;
}

/**
 * Session temp tables (one set per pooled connection, emptied at every commit). gf_stage
 * receives the COPY; gf_fresh holds the pings this flush persisted for the first time;
 * gf_changed the window states this flush touched (window mode).
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
) ON COMMIT DELETE ROWS;`;

/**
 * Dedup against everything persisted before. The batch is already unique per key (JS) and
 * sorted by key (lock order: concurrent workers never deadlock on ping_log).
 */
const SQL_LOG = `INSERT INTO ping_log (tenant, entity_id, ts, seq) SELECT tenant, entity_id, ts, seq FROM gf_stage ON CONFLICT DO NOTHING`;

/**
 * Rare case (redelivery, late duplicates): some keys already existed. The fresh ones are
 * those ping_log rows inserted by THIS transaction (their xmin is our transaction id).
 */
const SQL_FRESH = `
INSERT INTO gf_fresh SELECT s.* FROM gf_stage s JOIN ping_log p USING (tenant, entity_id, ts, seq)
WHERE p.xmin::text = (txid_current() % 4294967296)::text
  AND p.ts >= (SELECT min(ts) FROM gf_stage) AND p.ts <= (SELECT max(ts) FROM gf_stage)`;

/** Window mode, step 1: commutative window state (counts, exact numeric sums, greatest (ts, seq)). */
const SQL_WINDOWS = `
WITH last AS (
  SELECT DISTINCT ON (tenant, entity_id, win) tenant, entity_id, win, ts, seq FROM gf_fresh
  ORDER BY tenant, entity_id, win, ts DESC, seq DESC
), agg AS (
  SELECT tenant, entity_id, win, count(*)::int AS n, coalesce(sum(speed::numeric), 0) AS ssum, count(speed)::int AS sn
  FROM gf_fresh GROUP BY tenant, entity_id, win
), up AS (
  INSERT INTO track_windows AS t (tenant, entity_id, win, ping_count, speed_sum, speed_n, last_ts, last_seq, prev_ts, prev_seq)
  SELECT a.tenant, a.entity_id, a.win, a.n, a.ssum, a.sn, l.ts, l.seq, NULL, NULL
  FROM agg a JOIN last l USING (tenant, entity_id, win) ORDER BY 1, 2, 3
  ON CONFLICT (tenant, entity_id, win) DO UPDATE SET
    ping_count = t.ping_count + excluded.ping_count,
    speed_sum = t.speed_sum + excluded.speed_sum,
    speed_n = t.speed_n + excluded.speed_n,
    prev_ts = t.last_ts,
    prev_seq = t.last_seq,
    last_ts = CASE WHEN (excluded.last_ts, excluded.last_seq) > (t.last_ts, t.last_seq) THEN excluded.last_ts ELSE t.last_ts END,
    last_seq = CASE WHEN (excluded.last_ts, excluded.last_seq) > (t.last_ts, t.last_seq) THEN excluded.last_seq ELSE t.last_seq END
  RETURNING t.tenant, t.entity_id, t.win, t.ping_count, t.speed_sum, t.speed_n, t.last_ts, t.last_seq, t.prev_ts, t.prev_seq
)
INSERT INTO gf_changed SELECT * FROM up`;

const MEAN = 'CASE WHEN c.speed_n > 0 THEN (c.speed_sum / c.speed_n)::real END';

/**
 * Window mode, step 2: the window's row is its latest fix; drop the row of a superseded
 * latest fix (by primary key: prev_ts is what the window held before this flush).
 */
const SQL_WINDOW_DELETE = `
DELETE FROM positions p USING gf_changed c
WHERE c.prev_ts IS NOT NULL AND c.prev_ts <> c.last_ts
  AND p.tenant = c.tenant AND p.entity_id = c.entity_id AND p.ts = c.prev_ts`;

const SQL_WINDOW_UPSERT = `
INSERT INTO positions AS p (tenant, entity_id, ts, seq, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed)
SELECT f.tenant, f.entity_id, f.ts, nullif(f.seq, -1), ST_SetSRID(ST_MakePoint(f.lon, f.lat), 4326), f.speed, f.heading, f.accuracy,
       f.kind, f.status, f.cell, c.ping_count, ${MEAN}
FROM gf_changed c JOIN gf_fresh f
  ON f.tenant = c.tenant AND f.entity_id = c.entity_id AND f.ts = c.last_ts AND f.seq = c.last_seq
WHERE c.prev_ts IS NULL OR (c.prev_ts, c.prev_seq) <> (c.last_ts, c.last_seq)
ORDER BY 1, 2, 3
ON CONFLICT (tenant, entity_id, ts) DO UPDATE SET
  seq = excluded.seq, geom = excluded.geom, speed = excluded.speed, heading = excluded.heading, accuracy = excluded.accuracy,
  kind = excluded.kind, status = excluded.status, cell = excluded.cell, ping_count = excluded.ping_count, mean_speed = excluded.mean_speed`;

/** Window mode, step 3: windows whose latest fix is unchanged only get new counts (by primary key). */
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

/** Cell aggregates: exact increments from fresh pings; distinct entities via cell_window_entities. */
const SQL_CELLS = `
WITH ent AS (
  INSERT INTO cell_window_entities (tenant, cell, win, entity_id)
  SELECT DISTINCT tenant, cell, win, entity_id FROM gf_fresh ORDER BY 1, 2, 3, 4
  ON CONFLICT DO NOTHING
  RETURNING tenant, cell, win
), newent AS (
  SELECT tenant, cell, win, count(*)::int AS k FROM ent GROUP BY 1, 2, 3
), agg AS (
  SELECT tenant, cell, min(cz) AS cz, min(cx) AS cx, min(cy) AS cy, win, count(*)::int AS n,
         coalesce(sum(speed::numeric), 0) AS ssum, count(speed)::int AS sn, max(speed)::real AS smax,
         sum(lon::numeric) AS lonsum, sum(lat::numeric) AS latsum,
         min(lon) AS min_lon, min(lat) AS min_lat, max(lon) AS max_lon, max(lat) AS max_lat
  FROM gf_fresh GROUP BY tenant, cell, win
)
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

function* chunks(pings: readonly StagedPing[], size = 2000): Generator<string> {
  for (let i = 0; i < pings.length; i += size) {
    let s = '';
    for (let j = i; j < Math.min(pings.length, i + size); j++) s += copyLine(pings[j]!);
    yield s;
  }
}

/**
 * Writes one batch inside the caller's transaction: COPY into the session staging table,
 * then set-based INSERT … SELECT … ON CONFLICT. Rows depend only on the set of pings ever
 * written (see docs/persistence.md), never on how they were batched or retried.
 */
export async function writeBatch(client: pg.PoolClient, pings: readonly StagedPing[], mode: PersistMode): Promise<WriteResult> {
  const steps: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string): void => { const now = performance.now(); steps[name] = Math.round(now - t); t = now; };
  if (pings.length === 0) return { fresh: 0, positions: 0, cellStats: 0, steps };
  const unique = uniqueSorted(pings);
  await client.query(TEMP_TABLES);
  await pipeline(Readable.from(chunks(unique)), client.query(copyStreams.from('COPY gf_stage FROM STDIN')));
  lap('copy');
  let positions = 0;
  let fresh: number;
  let src = 'gf_stage';
  if (mode === 'raw') {
    // positions is the ledger (see SQL_RAW_INSERT): no per-ping ping_log row in the usual case.
    const inserted = (await client.query(SQL_RAW_INSERT)).rowCount ?? 0;
    positions = inserted;
    fresh = inserted;
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
    if (fresh === 0) return { fresh: 0, positions: 0, cellStats: 0, steps };
  } else {
    fresh = (await client.query(SQL_LOG)).rowCount ?? 0;
    if (fresh === 0) return { fresh: 0, positions: 0, cellStats: 0, steps };
    // Usually every ping is new: work straight from the staging table.
    if (fresh < unique.length) {
      await client.query(PK_JOINS_ONLY);
      await client.query(SQL_FRESH);
      await client.query(ALL_JOINS);
      src = 'gf_fresh';
    }
    lap('dedup');
    // Row counts and distinct estimates for the set-based steps; a 3,000-row sample is plenty
    // (the default target samples 30,000 rows: ≈ 0.15 s per 200,000-ping flush).
    await client.query('SET LOCAL default_statistics_target = 10');
    await client.query(`ANALYZE ${src}`);
    lap('analyze');
  }
  const q = (sql: string): Promise<pg.QueryResult> => client.query(src === 'gf_fresh' ? sql : sql.replaceAll('gf_fresh', src));
  if (mode === 'window') {
    await q(SQL_WINDOWS);
    await client.query('ANALYZE gf_changed');
    await client.query(PK_JOINS_ONLY);
    await client.query(SQL_WINDOW_DELETE);
    positions += (await client.query(SQL_WINDOW_COUNTS)).rowCount ?? 0;
    await client.query(ALL_JOINS);
    positions += (await q(SQL_WINDOW_UPSERT)).rowCount ?? 0;
    lap(mode);
  }
  const cellStats = (await q(SQL_CELLS)).rowCount ?? 0;
  lap('cells');
  return { fresh, positions, cellStats, steps };
}
