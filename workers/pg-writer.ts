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
CREATE TEMP TABLE IF NOT EXISTS gf_changed (
  tenant text, entity_id text, win timestamptz, ping_count integer, speed_sum numeric,
  speed_n integer, last_ts timestamptz, last_seq bigint
) ON COMMIT DELETE ROWS;`;

/** Deduplicate the batch and against everything persisted before (ping_log). */
const SQL_FRESH = `
WITH d AS (
  SELECT DISTINCT ON (tenant, entity_id, ts, seq) * FROM gf_stage
  ORDER BY tenant, entity_id, ts, seq, lon, lat, speed, heading, accuracy, kind, status, cell
), ins AS (
  INSERT INTO ping_log (tenant, entity_id, ts, seq)
  SELECT tenant, entity_id, ts, seq FROM d ORDER BY 1, 2, 3, 4
  ON CONFLICT DO NOTHING
  RETURNING tenant, entity_id, ts, seq
)
INSERT INTO gf_fresh SELECT d.* FROM d JOIN ins USING (tenant, entity_id, ts, seq)`;

/** Window mode, step 1: commutative window state (counts, exact numeric sums, greatest (ts, seq)). */
const SQL_WINDOWS = `
WITH last AS (
  SELECT DISTINCT ON (tenant, entity_id, win) tenant, entity_id, win, ts, seq FROM gf_fresh
  ORDER BY tenant, entity_id, win, ts DESC, seq DESC
), agg AS (
  SELECT tenant, entity_id, win, count(*)::int AS n, coalesce(sum(speed::numeric), 0) AS ssum, count(speed)::int AS sn
  FROM gf_fresh GROUP BY tenant, entity_id, win
), up AS (
  INSERT INTO track_windows AS t (tenant, entity_id, win, ping_count, speed_sum, speed_n, last_ts, last_seq)
  SELECT a.tenant, a.entity_id, a.win, a.n, a.ssum, a.sn, l.ts, l.seq
  FROM agg a JOIN last l USING (tenant, entity_id, win) ORDER BY 1, 2, 3
  ON CONFLICT (tenant, entity_id, win) DO UPDATE SET
    ping_count = t.ping_count + excluded.ping_count,
    speed_sum = t.speed_sum + excluded.speed_sum,
    speed_n = t.speed_n + excluded.speed_n,
    last_ts = CASE WHEN (excluded.last_ts, excluded.last_seq) > (t.last_ts, t.last_seq) THEN excluded.last_ts ELSE t.last_ts END,
    last_seq = CASE WHEN (excluded.last_ts, excluded.last_seq) > (t.last_ts, t.last_seq) THEN excluded.last_seq ELSE t.last_seq END
  RETURNING t.tenant, t.entity_id, t.win, t.ping_count, t.speed_sum, t.speed_n, t.last_ts, t.last_seq
)
INSERT INTO gf_changed SELECT * FROM up`;

const MEAN = 'CASE WHEN c.speed_n > 0 THEN (c.speed_sum / c.speed_n)::real END';
const RANGE = `p.ts >= (SELECT min(win) FROM gf_changed) AND p.ts < (SELECT max(win) FROM gf_changed) + interval '10 seconds'`;

/** Window mode, step 2: the window's row is its latest fix; drop a row that is no longer the latest. */
const SQL_WINDOW_DELETE = `
DELETE FROM positions p USING gf_changed c
WHERE p.tenant = c.tenant AND p.entity_id = c.entity_id
  AND p.ts >= c.win AND p.ts < c.win + interval '10 seconds' AND p.ts <> c.last_ts AND ${RANGE}`;

const SQL_WINDOW_UPSERT = `
INSERT INTO positions AS p (tenant, entity_id, ts, seq, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed)
SELECT f.tenant, f.entity_id, f.ts, nullif(f.seq, -1), ST_SetSRID(ST_MakePoint(f.lon, f.lat), 4326), f.speed, f.heading, f.accuracy,
       f.kind, f.status, f.cell, c.ping_count, ${MEAN}
FROM gf_changed c JOIN gf_fresh f
  ON f.tenant = c.tenant AND f.entity_id = c.entity_id AND f.ts = c.last_ts AND f.seq = c.last_seq
ORDER BY 1, 2, 3
ON CONFLICT (tenant, entity_id, ts) DO UPDATE SET
  seq = excluded.seq, geom = excluded.geom, speed = excluded.speed, heading = excluded.heading, accuracy = excluded.accuracy,
  kind = excluded.kind, status = excluded.status, cell = excluded.cell, ping_count = excluded.ping_count, mean_speed = excluded.mean_speed`;

/** Window mode, step 3: windows whose latest fix was written earlier only get new counts. */
const SQL_WINDOW_COUNTS = `
UPDATE positions p SET ping_count = c.ping_count, mean_speed = ${MEAN}
FROM gf_changed c
WHERE p.tenant = c.tenant AND p.entity_id = c.entity_id AND p.ts = c.last_ts AND ${RANGE}
  AND NOT EXISTS (SELECT 1 FROM gf_fresh f WHERE f.tenant = c.tenant AND f.entity_id = c.entity_id AND f.ts = c.last_ts AND f.seq = c.last_seq)`;

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

/** One COPY text-format line per ping. */
export function copyLine(p: StagedPing): string {
  return `${p.tenant}\t${p.id}\t${new Date(p.ts).toISOString()}\t${p.seq}\t${p.lon}\t${p.lat}\t${opt(p.speed)}\t${opt(p.heading)}\t${opt(p.accuracy)}\t${opt(p.kind)}\t${opt(p.status)}\t${p.cell}\t${p.cz}\t${p.cx}\t${p.cy}\t${new Date(p.win).toISOString()}\n`;
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
  if (pings.length === 0) return { fresh: 0, positions: 0, cellStats: 0 };
  await client.query(TEMP_TABLES);
  await pipeline(Readable.from(chunks(pings)), client.query(copyStreams.from('COPY gf_stage FROM STDIN')));
  const fresh = (await client.query(SQL_FRESH)).rowCount ?? 0;
  if (fresh === 0) return { fresh: 0, positions: 0, cellStats: 0 };
  await client.query('ANALYZE gf_fresh');
  let positions = 0;
  if (mode === 'window') {
    await client.query(SQL_WINDOWS);
    await client.query('ANALYZE gf_changed');
    await client.query(SQL_WINDOW_DELETE);
    positions += (await client.query(SQL_WINDOW_UPSERT)).rowCount ?? 0;
    positions += (await client.query(SQL_WINDOW_COUNTS)).rowCount ?? 0;
  } else {
    positions = (await client.query(SQL_RAW)).rowCount ?? 0;
  }
  const cellStats = (await client.query(SQL_CELLS)).rowCount ?? 0;
  return { fresh, positions, cellStats };
}
