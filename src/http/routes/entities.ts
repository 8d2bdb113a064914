import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope } from '../../auth/tokens.js';
import type { LiveReader } from '../../store/redis/live-reader.js';
import { AppError } from '../../errors/app-error.js';
import { ENTITY_ID_RE } from '../../protocol/ping.js';
import { bearerToken, route } from '../respond.js';

export interface EntitiesDeps {
  log: Logger;
  verifier: TokenVerifier;
  reader: LiveReader;
}

/** GET /v1/entities/:id: the latest live state of an entity of the caller's tenant; 404 when stale or unknown. */
export function registerEntitiesRoute(app: TemplatedApp, d: EntitiesDeps): void {
  app.get('/v1/entities/:id', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'query');
    const id = call.params[0] ?? '';
    if (!ENTITY_ID_RE.test(id)) throw new AppError('BAD_REQUEST', 'id: 1-64 chars of A-Z a-z 0-9 . _ : -');
    const e = await d.reader.entity(who.tenant, id);
    if (!e) throw new AppError('NOT_FOUND', `no live entity '${id}'`);
    return { status: 200, body: e };
  }, { paramCount: 1 }));
}
