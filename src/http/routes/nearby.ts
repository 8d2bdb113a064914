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

/** GET /v1/nearby?lat&lon&radius[&limit]: live entities of the caller's tenant, nearest first. */
export function registerNearbyRoute(app: TemplatedApp, d: NearbyDeps): void {
  const schema = z.object({
    lat: z.coerce.number().finite().min(-MAX_MERCATOR_LAT).max(MAX_MERCATOR_LAT),
    lon: z.coerce.number().finite().min(-180).max(180),
    radius: z.coerce.number().finite().positive().max(d.maxRadiusMeters),
    limit: z.coerce.number().int().min(1).max(d.maxLimit).default(Math.min(50, d.maxLimit)),
  });
  app.get('/v1/nearby', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'query');
    const q = parseQuery(schema, call.query);
    try {
      const hits = await d.reader.nearby({ tenant: who.tenant, ...q });
      return { status: 200, body: { count: hits.length, results: hits } };
    } catch (err) {
      if (err instanceof TooManyCellsError) throw new AppError('BAD_REQUEST', 'radius too large for this location');
      throw err;
    }
  }));
}
