import { z } from 'zod';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope } from '../../auth/tokens.js';
import type { LiveReader } from '../../store/redis/live-reader.js';
import { TooManyCellsError } from '../../store/redis/live-reader.js';
import { AppError } from '../../errors/app-error.js';
import { MAX_MERCATOR_LAT } from '../../protocol/ping.js';
import { bearerToken, route } from '../respond.js';
import { parseQuery } from '../query-params.js';

export interface NearbyDeps {
  log: Logger;
  verifier: TokenVerifier;
  reader: LiveReader;
  maxRadiusMeters: number;
  maxLimit: number;
}

export const filterParams = {
  kind: z.string().min(1).max(32).optional(),
  status: z.string().min(1).max(32).optional(),
};

export function tooManyCells(err: unknown): never {
  if (err instanceof TooManyCellsError) throw new AppError('BAD_REQUEST', 'area too large for this location: it spans too many ingest cells');
  throw err;
}

/**
 * GET /v1/nearby?lat&lon&radius[&limit&kind&status]: live entities of the caller's tenant,
 * nearest first. Latitudes are limited to ±85.05112878 (Web Mercator / Redis GEO).
 */
export function registerNearbyRoute(app: TemplatedApp, d: NearbyDeps): void {
  const schema = z.object({
    lat: z.coerce.number().finite().min(-MAX_MERCATOR_LAT).max(MAX_MERCATOR_LAT),
    lon: z.coerce.number().finite().min(-180).max(180),
    radius: z.coerce.number().finite().positive().max(d.maxRadiusMeters),
    limit: z.coerce.number().int().min(1).max(d.maxLimit).default(Math.min(50, d.maxLimit)),
    ...filterParams,
  }).strict();
  app.get('/v1/nearby', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'query');
    const q = parseQuery(schema, call.query);
    const hits = await d.reader.nearby({ tenant: who.tenant, ...q }).catch(tooManyCells);
    return { status: 200, body: { count: hits.length, results: hits } };
  }));
}
