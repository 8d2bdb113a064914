/** Pieces both modes' writers use: temp tables, the key order, join settings, cell aggregates. */
import type { StagedPing } from '../entry.js';
import type { WriteResult } from './write-result.js';

/**
 * Session temp tables (one set per pooled connection, emptied at every commit). Raw mode:
 * gf_stage receives the COPY (one row per ping), gf_fresh/gf_conf the pings of the rare
 * conflict path. Window mode: gf_sub receives the COPY (one row per entity, window and cell,
 * the pings as parallel arrays), gf_agg its aggregates, gf_slow the ledgers of windows that
 * may already hold some of the batch's keys, gf_changed the window states this flush touched.
 * Raw mode's fast path (every ping new): gf_cell, one row per cell window with its exact sums
 * (or, when JS cannot compute them, the pings' speeds, lon and lat as arrays), and
 * gf_cell_ent, its distinct entities.
 */
export const TEMP_TABLES = `
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

/** Primary-key lookups into positions: never let a stale row estimate pick a hash join over a full scan. */
export const PK_JOINS_ONLY = 'SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off';
export const ALL_JOINS = 'SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on';
/**
 * Cell aggregates: exact increments from fresh pings; distinct entities via
 * cell_window_entities (its insert returns the entities new to a cell window). `ent`: the
 * (tenant, cell, win, entity) of the fresh pings; `agg`: their sums per cell window.
 */
export const cellsSql = (ent: string, agg: string): string => `
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

export const EMPTY_RESULT = (steps: Record<string, number>): WriteResult => ({ fresh: 0, positions: 0, cellStats: 0, steps });

