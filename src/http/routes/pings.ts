import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../../log/logger.js';
import type { TokenVerifier } from '../../auth/tokens.js';
import { requireScope } from '../../auth/tokens.js';
import { AppError } from '../../errors/app-error.js';
import { ERRORS } from '../../protocol/errors.js';
import { decodeFrame } from '../../ingest/decode.js';
import { processPingsAsync, type ProcessDeps } from '../../ingest/process.js';
import { ingestMetrics } from '../../ingest/metrics.js';
import { bearerToken, route } from '../respond.js';

export interface PingsDeps extends ProcessDeps {
  log: Logger;
  verifier: TokenVerifier;
  maxBatch: number;
  maxPayloadBytes: number;
  /** True once the gateway is shutting down: new pings are refused with 503 SHUTTING_DOWN. */
  isClosing?: () => boolean;
}

const MSGPACK_TYPES = new Set(['application/msgpack', 'application/x-msgpack', 'application/vnd.msgpack']);

/**
 * POST /v1/pings: one ping or a batch, JSON (application/json) or MessagePack
 * (application/msgpack) body; the same validation and outcome as a WebSocket frame.
 * 200 all accepted; 207 some accepted (errors listed); otherwise the status of the first
 * error (400, 403, 413, 422, 503); the body is always { accepted, seq, errors }.
 */
export function registerPingsRoute(app: TemplatedApp, d: PingsDeps): void {
  app.post('/v1/pings', route(d.log, async (call) => {
    const who = await d.verifier.verify(bearerToken(call));
    requireScope(who, 'ingest');
    // After the driver sockets were closed and the batches flushed, nothing more is taken in.
    if (d.isClosing?.()) throw new AppError('SHUTTING_DOWN', ERRORS.SHUTTING_DOWN.message);
    const type = (call.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const binary = MSGPACK_TYPES.has(type);
    if (!binary && type !== 'application/json') throw new AppError('BAD_FRAME', 'content-type must be application/json or application/msgpack');
    ingestMetrics.frames.inc({ transport: 'http', encoding: binary ? 'msgpack' : 'json' });
    const raws = decodeFrame(call.body ?? Buffer.alloc(0), binary, d.maxBatch);
    const r = await processPingsAsync(raws, who, d);
    const status = r.errors.length === 0 ? 200 : r.count > 0 ? 207 : ERRORS[r.errors[0]!.code].status;
    return { status, body: { accepted: r.count, seq: r.seq, errors: r.errors } };
  }, { bodyLimit: d.maxPayloadBytes }));
}
