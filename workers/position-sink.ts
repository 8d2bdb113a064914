import type pg from 'pg';
import type { AcceptedPing } from '../src/protocol/ping.js';

/**
 * Inserts pings as `positions` rows in one statement; duplicates (same tenant, entity, ts)
 * are ignored, so redelivered entries never double rows.
 */
export async function insertPositions(client: pg.PoolClient | pg.Pool, pings: readonly AcceptedPing[]): Promise<number> {
  if (pings.length === 0) return 0;
  const cols = {
    tenant: [] as string[], id: [] as string[], ts: [] as string[], lon: [] as number[], lat: [] as number[],
    speed: [] as (number | null)[], heading: [] as (number | null)[], accuracy: [] as (number | null)[],
    kind: [] as (string | null)[], status: [] as (string | null)[], cell: [] as string[],
  };
  for (const p of pings) {
    cols.tenant.push(p.tenant); cols.id.push(p.id); cols.ts.push(new Date(p.ts).toISOString());
    cols.lon.push(p.lon); cols.lat.push(p.lat);
    cols.speed.push(p.speed ?? null); cols.heading.push(p.heading ?? null); cols.accuracy.push(p.accuracy ?? null);
    cols.kind.push(p.kind ?? null); cols.status.push(p.status ?? null); cols.cell.push(p.cell);
  }
  const res = await client.query(
    `INSERT INTO positions (tenant, entity_id, ts, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed)
     SELECT t, i, ts, ST_SetSRID(ST_MakePoint(lon, lat), 4326), sp, hd, ac, k, st, c, 1, sp
     FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::float8[], $6::real[], $7::real[], $8::real[], $9::text[], $10::text[], $11::text[])
       AS u(t, i, ts, lon, lat, sp, hd, ac, k, st, c)
     ON CONFLICT DO NOTHING`,
    [cols.tenant, cols.id, cols.ts, cols.lon, cols.lat, cols.speed, cols.heading, cols.accuracy, cols.kind, cols.status, cols.cell],
  );
  return res.rowCount ?? 0;
}
