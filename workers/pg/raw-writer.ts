/** Raw mode's writer: one positions row per ping; positions is its own exactly-once record. */
import type pg from 'pg';
import type { StagedPing } from '../entry.js';
import { isDataError } from '../errors.js';
import type { Lap, WriteResult } from './write-result.js';
import { arr, chunks, copyInto, f8, isoMs, opt, real, realFits } from './copy-text.js';
import { numericParts, DecimalSum } from './decimal-sum.js';
import { ALL_JOINS, EMPTY_RESULT, PK_JOINS_ONLY, cellsSql } from './shared.js';

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

/** Raw mode: from the fresh pings, one row each (`src`: gf_fresh, or gf_stage when every staged ping was fresh). */
const cellsOf = (src: string): string => cellsSql(`SELECT DISTINCT tenant, cell, win, entity_id FROM ${src}`, `
  SELECT tenant, cell, min(cz) AS cz, min(cx) AS cx, min(cy) AS cy, win, count(*)::int AS n,
         coalesce(sum(speed::numeric), 0) AS ssum, count(speed)::int AS sn, max(speed)::real AS smax,
         sum(lon::numeric) AS lonsum, sum(lat::numeric) AS latsum,
         min(lon) AS min_lon, min(lat) AS min_lat, max(lon) AS max_lon, max(lat) AS max_lat
  FROM ${src} GROUP BY tenant, cell, win`);
const SQL_CELLS_FRESH = cellsOf('gf_fresh');
const SQL_CELLS_STAGED = cellsOf('gf_stage');

/**
 * Raw mode's fast path: from one row per cell window (gf_cell, computed in JS: counts, max,
 * extent and the exact numeric sums — see DecimalSum) and its distinct entities. A cell window
 * with a value whose `float8::numeric` JS does not reproduce (see numericParts) comes with the
 * values as arrays instead, summed here as cellsOf does.
 */
const SQL_FAST_CELLS = cellsSql('SELECT tenant, cell, win, entity_id FROM gf_cell_ent', `
  SELECT c.tenant, c.cell, c.cz, c.cx, c.cy, c.win, c.n,
         coalesce(c.ssum, (SELECT coalesce(sum(x::numeric), 0) FROM unnest(c.speed) x)) AS ssum, c.sn, c.smax::real AS smax,
         coalesce(c.lonsum, (SELECT sum(x::numeric) FROM unnest(c.lon) x)) AS lonsum,
         coalesce(c.latsum, (SELECT sum(x::numeric) FROM unnest(c.lat) x)) AS latsum,
         c.min_lon, c.min_lat, c.max_lon, c.max_lat
  FROM gf_cell c`);

/** hex EWKB of ST_SetSRID(ST_MakePoint(lon, lat), 4326): little endian, type Point with the SRID flag, SRID 4326. */
const EWKB_POINT_4326 = '0101000020e6100000';
const ewkbXY = Buffer.alloc(16);
export function ewkbPoint(lon: number, lat: number): string {
  ewkbXY.writeDoubleLE(f8(lon), 0);
  ewkbXY.writeDoubleLE(f8(lat), 8);
  return EWKB_POINT_4326 + ewkbXY.toString('hex');
}

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
export function fastPathFits(unique: readonly StagedPing[]): boolean {
  let prev: StagedPing | undefined;
  for (const p of unique) {
    if (prev && prev.ts === p.ts && prev.id === p.id && prev.tenant === p.tenant) return false;
    if (!realFits(p.speed) || !realFits(p.heading) || !realFits(p.accuracy)) return false;
    prev = p;
  }
  return true;
}

/** One cell window of a batch whose pings are all fresh: what cellsOf aggregates, computed in JS. */
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
 * so the cell aggregates come from the batch itself (CellWindows: counts, distinct entities,
 * max, extent and the exact sums; SQL sums only a cell window JS cannot), with no per-ping
 * staging row. A
 * key that already has a row (a redelivery, a duplicate through two gateways or another
 * worker's batch) fails the COPY (23505): back to the savepoint (none of its rows is left),
 * RELEASE it — the staged path identifies its own rows by the top-level xid, so it must not
 * run inside the subtransaction — and undefined: the caller takes the staged path. Any other
 * data error also falls back, so the staged path decides the batch's fate as before.
 */
export async function writeRawFast(client: pg.PoolClient, unique: StagedPing[], steps: Record<string, number>, lap: Lap): Promise<WriteResult | undefined> {
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

/** One COPY text-format line per ping: gf_stage, the staged path's table. */
export function copyLine(p: StagedPing): string {
  return `${p.tenant}\t${p.id}\t${isoMs(p.ts)}\t${p.seq}\t${p.lon}\t${p.lat}\t${opt(p.speed)}\t${opt(p.heading)}\t${opt(p.accuracy)}\t${opt(p.kind)}\t${opt(p.status)}\t${p.cell}\t${p.cz}\t${p.cx}\t${p.cy}\t${isoMs(p.win)}\n`;
}

/**
 * Raw mode's staged path: COPY into gf_stage, INSERT … ON CONFLICT DO NOTHING into positions,
 * and for the pings without a row of their own, the ping_log ledger (docs/persistence.md).
 */
export async function writeRaw(client: pg.PoolClient, unique: StagedPing[], steps: Record<string, number>, lap: Lap): Promise<WriteResult> {
  await copyInto(client, 'gf_stage', chunks(unique, copyLine));
  lap('copy');
  // positions is the ledger (see SQL_RAW_INSERT): no per-ping ping_log row in the usual case.
  const inserted = (await client.query(SQL_RAW_INSERT)).rowCount ?? 0;
  let positions = inserted;
  let fresh = inserted;
  let cells = SQL_CELLS_STAGED;
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
    cells = SQL_CELLS_FRESH;
    lap('conflicts');
  }
  if (fresh === 0) return EMPTY_RESULT(steps);
  const cellStats = (await client.query(cells)).rowCount ?? 0;
  lap('cells');
  return { fresh, positions, cellStats, steps };
}

