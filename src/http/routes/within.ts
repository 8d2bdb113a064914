import { z } from 'zod';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope } from '../../auth/tokens.js';
import type { LiveReader } from '../../store/redis/live-reader.js';
import { AppError } from '../../errors/app-error.js';
import { MAX_MERCATOR_LAT } from '../../protocol/ping.js';
import { parseTile, tileBBox, type BBox } from '../../geo/tiles.js';
import { bearerToken, route } from '../respond.js';
import { parseQuery } from '../query-params.js';
import { filterParams, tooManyCells } from './nearby.js';

export interface WithinDeps {
  log: Logger;
  verifier: TokenVerifier;
  reader: LiveReader;
  maxLimit: number;
}

function parseBBox(s: string): BBox {
  const parts = s.split(',').map((v) => Number(v));
  if (parts.length !== 4 || parts.some((v) => !Number.isFinite(v))) throw new AppError('BAD_REQUEST', 'bbox: expected w,s,e,n in degrees');
  const [w, so, e, n] = parts as [number, number, number, number];
  if (w < -180 || w > 180 || e < -180 || e > 180) throw new AppError('BAD_REQUEST', 'bbox: longitudes must be within [-180, 180]');
  if (so < -90 || n > 90 || so > n) throw new AppError('BAD_REQUEST', 'bbox: latitudes must be within [-90, 90] with south <= north');
  // Clamp to the Web Mercator / Redis GEO limit: nothing is stored beyond it.
  return [w, Math.max(so, -MAX_MERCATOR_LAT), e, Math.min(n, MAX_MERCATOR_LAT)];
}

/**
 * GET /v1/within?bbox=w,s,e,n | ?tile=z/x/y [&limit&kind&status]: live entities in an area,
 * as JSON or (format=geojson) a GeoJSON FeatureCollection. west > east crosses the antimeridian.
 */
export function registerWithinRoute(app: TemplatedApp, d: WithinDeps): void {
  const schema = z.object({
    bbox: z.string().optional(),
    tile: z.string().optional(),
    limit: z.coerce.number().int().min(1).max(d.maxLimit).default(d.maxLimit),
    format: z.enum(['json', 'geojson']).default('json'),
    ...filterParams,
  }).strict();
  app.get('/v1/within', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'query');
    const q = parseQuery(schema, call.query);
    if ((q.bbox === undefined) === (q.tile === undefined)) throw new AppError('BAD_REQUEST', 'give exactly one of bbox=w,s,e,n or tile=z/x/y');
    let bbox: BBox;
    if (q.tile !== undefined) {
      const t = parseTile(q.tile);
      if (!t) throw new AppError('BAD_REQUEST', 'tile: expected z/x/y inside the grid (z <= 22)');
      bbox = tileBBox(t);
    } else bbox = parseBBox(q.bbox!);
    const { results, truncated } = await d.reader.within({ tenant: who.tenant, bbox, limit: q.limit, kind: q.kind, status: q.status }).catch(tooManyCells);
    if (q.format === 'geojson') {
      return {
        status: 200,
        contentType: 'application/geo+json',
        body: {
          type: 'FeatureCollection',
          truncated,
          features: results.map(({ lat, lon, ...props }) => ({ type: 'Feature', id: props.id, geometry: { type: 'Point', coordinates: [lon, lat] }, properties: props })),
        },
      };
    }
    return { status: 200, body: { count: results.length, truncated, results } };
  }));
}
