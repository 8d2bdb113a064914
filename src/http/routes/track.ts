import { z } from 'zod';
import type { TemplatedApp } from 'uWebSockets.js';
import type pg from 'pg';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope } from '../../auth/tokens.js';
import { AppError } from '../../errors/app-error.js';
import { ENTITY_ID_RE } from '../../protocol/ping.js';
import { bearerToken, route } from '../respond.js';
import { parseQuery } from '../query-params.js';

export interface TrackDeps {
  log: Logger;
  verifier: TokenVerifier;
  pg: pg.Pool;
  /** Longest from..to range, ms (default 7 days). */
  maxRangeMs?: number;
  /** Most points in one answer (default 10,000). */
  maxPoints?: number;
}

export const TRACK_DEFAULT_SPAN_MS = 3600_000;

/** A time query parameter: ms since the epoch or an ISO-8601 date-time. */
export const timeParam = z.string().trim().min(1).transform((s, ctx) => {
  const ms = /^\d{1,15}$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(ms)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'must be ms since the epoch or an ISO-8601 date-time' });
    return z.NEVER;
  }
  return ms;
});

/** Resolves from/to (defaults: to = now, from = to - defaultSpanMs) and checks order and cap. */
export function resolveRange(q: { from?: number; to?: number }, defaultSpanMs: number, maxSpanMs: number): { from: number; to: number } | string {
  const to = q.to ?? Date.now();
  const from = q.from ?? to - defaultSpanMs;
  if (from >= to) return 'from must be before to';
  if (to - from > maxSpanMs) return `range too long: at most ${Math.round(maxSpanMs / 3600_000)} h`;
  return { from, to };
}

interface Row { t: string; lon: number; lat: number; speed: number | null; heading: number | null; status: string | null; ping_count: number }

/**
 * GET /v1/entities/:id/track?from&to&limit: the entity's persisted path (PostGIS `positions`)
 * as a GeoJSON Feature: LineString (Point for one fix, null geometry for none) with per-point
 * times, speeds, headings, statuses and ping counts in properties. Tenant from the token,
 * scope `query`. Past `limit` points the most recent ones are returned and `truncated` is set.
 */
export function registerTrackRoute(app: TemplatedApp, d: TrackDeps): void {
  const maxRangeMs = d.maxRangeMs ?? 7 * 86_400_000;
  const maxPoints = d.maxPoints ?? 10_000;
  const schema = z.object({
    from: timeParam.optional(),
    to: timeParam.optional(),
    limit: z.coerce.number().int().min(1).max(maxPoints).default(Math.min(5000, maxPoints)),
  });
  app.get('/v1/entities/:id/track', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'query');
    const id = call.params[0] ?? '';
    if (!ENTITY_ID_RE.test(id)) throw new AppError('BAD_REQUEST', 'id: 1-64 chars of A-Z a-z 0-9 . _ : -');
    const q = parseQuery(schema, call.query);
    const range = resolveRange(q, TRACK_DEFAULT_SPAN_MS, maxRangeMs);
    if (typeof range === 'string') throw new AppError('BAD_REQUEST', range);
    let rows: Row[];
    try {
      rows = (await d.pg.query<Row>(
        `SELECT (extract(epoch from ts) * 1000)::bigint::text AS t, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed, heading, status, ping_count
         FROM positions WHERE tenant = $1 AND entity_id = $2 AND ts >= to_timestamp($3 / 1000.0) AND ts < to_timestamp($4 / 1000.0)
         ORDER BY ts DESC LIMIT $5`,
        [who.tenant, id, range.from, range.to, q.limit + 1],
      )).rows;
    } catch (err) {
      d.log.warn({ err }, 'track query failed');
      throw new AppError('UNAVAILABLE', 'history store unavailable');
    }
    const truncated = rows.length > q.limit;
    if (truncated) rows = rows.slice(0, q.limit);
    rows.reverse();
    const coords = rows.map((r) => [r.lon, r.lat]);
    const geometry = coords.length >= 2 ? { type: 'LineString', coordinates: coords } : coords.length === 1 ? { type: 'Point', coordinates: coords[0] } : null;
    return {
      status: 200,
      contentType: 'application/geo+json',
      body: {
        type: 'Feature',
        geometry,
        properties: {
          id, tenant: who.tenant, from: new Date(range.from).toISOString(), to: new Date(range.to).toISOString(),
          count: rows.length, truncated,
          times: rows.map((r) => Number(r.t)),
          speeds: rows.map((r) => r.speed), headings: rows.map((r) => r.heading), statuses: rows.map((r) => r.status),
          ping_counts: rows.map((r) => r.ping_count),
        },
      },
    };
  }, { paramCount: 1 }));
}
