import type { Principal } from '../auth/tokens.js';
import type { ErrorCode } from '../protocol/errors.js';
import { ERRORS } from '../protocol/errors.js';
import type { AcceptedPing } from '../protocol/ping.js';
import { cellOf } from '../geo/tiles.js';
import { validatePing, type ValidationLimits } from './validate.js';
import type { IngestBatcher } from './batcher.js';
import { ingestMetrics } from './metrics.js';

/** An error about one ping of a frame (or the whole frame when index is absent). */
export interface PingError {
  code: ErrorCode;
  message: string;
  index?: number;
  id?: string;
  seq?: number;
}

export interface FrameOutcome {
  /** Pings made durable (advanced, history or duplicate of a durable ping). */
  count: number;
  /** Highest seq among them, if any carried one. */
  seq: number | null;
  errors: PingError[];
}

export interface ProcessDeps {
  batcher: IngestBatcher;
  ingestZoom: number;
  limits: ValidationLimits;
}

/**
 * The ingest path shared by the WebSocket and POST /v1/pings: validate each raw ping, hand the
 * good ones to the batcher, resolve once Redis confirmed with the per-ping errors.
 * `allowed` (rate limit) is how many pings of the frame may be considered; the rest are refused.
 */
export function processPingsAsync(raws: readonly unknown[], who: Principal, d: ProcessDeps): Promise<FrameOutcome> {
  return new Promise((resolve) => { processPings(raws, who, d, raws.length, resolve); });
}

/** Calls `done` exactly once: at once when nothing needs Redis, else once Redis answered. */
export function processPings(raws: readonly unknown[], who: Principal, d: ProcessDeps, allowed: number, done: (r: FrameOutcome) => void): void {
  if (d.batcher.overloaded()) {
    // Shed load before spending CPU on validation: the client retries the frame later.
    ingestMetrics.rejected.inc({ code: 'OVERLOADED' }, raws.length);
    return done({ count: 0, seq: null, errors: [{ code: 'OVERLOADED', message: ERRORS.OVERLOADED.message }] });
  }
  const now = Date.now();
  const errors: PingError[] = [];
  const accepted: AcceptedPing[] = [];
  const acceptedIdx: number[] = [];
  for (let index = 0; index < raws.length; index++) {
    const raw = raws[index];
    if (index >= allowed) {
      const r = raw as { id?: unknown; seq?: unknown } | null;
      errors.push(withRef({ code: 'RATE_LIMITED', message: ERRORS.RATE_LIMITED.message, index }, r));
      continue;
    }
    const v = validatePing(raw, who, now, d.limits);
    if (!v.ok) {
      errors.push({ code: v.code, message: v.message, index, ...(v.id !== undefined ? { id: v.id } : {}), ...(v.seq !== undefined ? { seq: v.seq } : {}) });
      continue;
    }
    // The validated ping is this frame's own object (decoded for this call): complete it in place.
    const p = v.ping as AcceptedPing;
    p.tenant = who.tenant;
    p.cell = cellOf(p.lon, p.lat, d.ingestZoom);
    p.rx = now;
    accepted.push(p);
    acceptedIdx.push(index);
  }
  for (const e of errors) ingestMetrics.rejected.inc({ code: e.code });
  if (accepted.length === 0) return done({ count: 0, seq: null, errors });
  d.batcher.submit(accepted, (err, outcomes, offset = 0) => {
    if (err !== undefined || !outcomes) {
      ingestMetrics.rejected.inc({ code: 'UNAVAILABLE' }, accepted.length);
      // First: the frame's outcome (POST /v1/pings answers with the first error's status, 503,
      // so a device retries the good pings instead of dropping them as refused).
      errors.unshift({ code: 'UNAVAILABLE', message: 'could not store pings; retry them' });
      return done({ count: 0, seq: null, errors });
    }
    let count = 0;
    let seq: number | null = null;
    let advanced = 0, history = 0, duplicate = 0;
    for (let j = 0; j < accepted.length; j++) {
      const o = outcomes[offset + j]!;
      const p = accepted[j]!;
      if (o === 'implausible') {
        ingestMetrics.rejected.inc({ code: 'IMPLAUSIBLE_JUMP' });
        errors.push({ code: 'IMPLAUSIBLE_JUMP', message: ERRORS.IMPLAUSIBLE_JUMP.message, index: acceptedIdx[j]!, id: p.id, ...(p.seq !== undefined ? { seq: p.seq } : {}) });
        continue;
      }
      if (o === 'advanced') advanced++; else if (o === 'history') history++; else duplicate++;
      count++;
      if (p.seq !== undefined && (seq === null || p.seq > seq)) seq = p.seq;
    }
    if (advanced > 0) ingestMetrics.accepted.inc({ outcome: 'advanced' }, advanced);
    if (history > 0) ingestMetrics.accepted.inc({ outcome: 'history' }, history);
    if (duplicate > 0) ingestMetrics.accepted.inc({ outcome: 'duplicate' }, duplicate);
    if (errors.length > 1) errors.sort((a, b) => (a.index ?? -1) - (b.index ?? -1));
    done({ count, seq, errors });
  });
}

function withRef(e: PingError, r: { id?: unknown; seq?: unknown } | null): PingError {
  if (typeof r?.id === 'string') e.id = r.id.slice(0, 64);
  if (typeof r?.seq === 'number' && Number.isFinite(r.seq)) e.seq = r.seq;
  return e;
}
