/** Window mode's writer: one staged row per entity, window and cell; each window's key ledger is its exactly-once record. */
import type pg from 'pg';
import type { StagedPing } from '../entry.js';
import type { Lap, WriteResult } from './write-result.js';
import { arr, chunks, copyInto, isoMs, opt } from './copy-text.js';
import { ALL_JOINS, EMPTY_RESULT, PK_JOINS_ONLY, cellsSql } from './shared.js';

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

/** Window mode: from the per (entity, window, cell) aggregates of the fresh pings. */
const SQL_WINDOW_CELLS = cellsSql('SELECT tenant, cell, win, entity_id FROM gf_agg', `
  SELECT tenant, cell, min(cz) AS cz, min(cx) AS cx, min(cy) AS cy, win, sum(n)::int AS n,
         sum(ssum) AS ssum, sum(sn)::int AS sn, max(smax) AS smax, sum(lonsum) AS lonsum, sum(latsum) AS latsum,
         min(min_lon) AS min_lon, min(min_lat) AS min_lat, max(max_lon) AS max_lon, max(max_lat) AS max_lat
  FROM gf_agg GROUP BY tenant, cell, win`);

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

/**
 * Window mode: one staged row per (entity, window, cell), no per-ping row anywhere. The
 * exactly-once record is the window's ledger (track_windows.key_off/key_seq): new windows are
 * inserted whole; existing ones are locked (sorted), and only when the batch reaches below a
 * window's greatest counted key are its keys checked one by one (in JS, against the ledger).
 */
export async function writeWindows(client: pg.PoolClient, unique: StagedPing[], steps: Record<string, number>, lap: Lap): Promise<WriteResult> {
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
