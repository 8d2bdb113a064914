import { z } from 'zod';
import type { TemplatedApp } from 'uWebSockets.js';
import type pg from 'pg';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope } from '../../auth/tokens.js';
import { AppError } from '../../errors/app-error.js';
import { bearerToken, route, type HttpCall } from '../respond.js';
import { parseQuery } from '../query-params.js';
import { resolveRange, timeParam } from './track.js';

export interface CellStatsDeps {
  log: Logger;
  verifier: TokenVerifier;
  pg: pg.Pool;
  /** Zoom of the ingest cells the aggregates are kept for. */
  ingestZoom: number;
  /** Longest from..to range, ms (default 24 h = 8,640 windows). */
  maxRangeMs?: number;
}

interface Row {
  t: string; cells: number; ping_count: number; entity_count: number; mean_speed: number | null; max_speed: number | null;
  lon: number; lat: number; min_lon: number; min_lat: number; max_lon: number; max_lat: number;
}

/**
 * GET /v1/cells/:z/:x/:y/stats?from&to (alias /v1/tiles/…): the 10 s aggregates of the
 * caller's tenant. z = ingest zoom: the cell's own windows (entity_count exact). z below it:
 * the ingest cells inside the tile merged per window (counts, sums, max, extent exact;
 * entity_count is then the sum over cells, an upper bound when entities crossed cells).
 */
export function registerCellStatsRoute(app: TemplatedApp, d: CellStatsDeps): void {
  const maxRangeMs = d.maxRangeMs ?? 86_400_000;
  const schema = z.object({ from: timeParam.optional(), to: timeParam.optional() });
  const handler = async (call: HttpCall) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'query');
    const [z0, x0, y0] = call.params.map((p) => (/^\d{1,8}$/.test(p) ? Number(p) : NaN)) as [number, number, number];
    if (!Number.isInteger(z0) || z0 > d.ingestZoom) throw new AppError('BAD_REQUEST', `z must be an integer from 0 to the ingest zoom ${d.ingestZoom}`);
    const n = 2 ** z0;
    if (!Number.isInteger(x0) || !Number.isInteger(y0) || x0 >= n || y0 >= n) throw new AppError('BAD_REQUEST', `x and y must be integers from 0 to ${n - 1} at zoom ${z0}`);
    const q = parseQuery(schema, call.query);
    const range = resolveRange(q, 3600_000, maxRangeMs);
    if (typeof range === 'string') throw new AppError('BAD_REQUEST', range);
    const shift = d.ingestZoom - z0;
    const span = 2 ** shift;
    let rows: Row[];
    try {
      rows = (await d.pg.query<Row>(
        `SELECT (extract(epoch from win) * 1000)::bigint::text AS t, count(*)::int AS cells,
                sum(ping_count)::int AS ping_count, sum(entity_count)::int AS entity_count,
                CASE WHEN sum(speed_n) > 0 THEN (sum(speed_sum) / sum(speed_n))::float8 END AS mean_speed, max(speed_max) AS max_speed,
                (sum(lon_sum) / sum(ping_count))::float8 AS lon, (sum(lat_sum) / sum(ping_count))::float8 AS lat,
                min(min_lon) AS min_lon, min(min_lat) AS min_lat, max(max_lon) AS max_lon, max(max_lat) AS max_lat
         FROM cell_stats
         WHERE tenant = $1 AND cz = $2 AND cx >= $3 AND cx < $4 AND cy >= $5 AND cy < $6
           AND win >= to_timestamp($7 / 1000.0) AND win < to_timestamp($8 / 1000.0)
         GROUP BY win ORDER BY win`,
        [who.tenant, d.ingestZoom, x0 * span, (x0 + 1) * span, y0 * span, (y0 + 1) * span, range.from, range.to],
      )).rows;
    } catch (err) {
      d.log.warn({ err }, 'cell stats query failed');
      throw new AppError('UNAVAILABLE', 'history store unavailable');
    }
    return {
      status: 200,
      body: {
        tile: `${z0}/${x0}/${y0}`, ingestZoom: d.ingestZoom, windowSeconds: 10, exactEntityCount: shift === 0,
        from: new Date(range.from).toISOString(), to: new Date(range.to).toISOString(), count: rows.length,
        windows: rows.map((r) => ({
          start: Number(r.t), cells: r.cells, ping_count: r.ping_count, entity_count: r.entity_count,
          mean_speed: r.mean_speed, max_speed: r.max_speed, centroid: [r.lon, r.lat], bbox: [r.min_lon, r.min_lat, r.max_lon, r.max_lat],
        })),
      },
    };
  };
  app.get('/v1/cells/:z/:x/:y/stats', route(d.log, handler, { paramCount: 3 }));
  app.get('/v1/tiles/:z/:x/:y/stats', route(d.log, handler, { paramCount: 3 }));
}
