import { isPlainValidPing, pingSchema, type Ping } from '../protocol/ping.js';
import type { ErrorCode } from '../protocol/errors.js';
import type { Principal } from '../auth/tokens.js';

export interface ValidationLimits {
  /** Pings further in the future than this are refused (clock skew allowance). */
  maxFutureMs: number;
  /** Pings older than this are refused. */
  maxAgeMs: number;
}

export type Validated =
  | { ok: true; ping: Ping }
  | { ok: false; code: ErrorCode; message: string; id?: string; seq?: number };

const COORD_FIELDS = new Set(['lat', 'lon']);

/** Validates one raw ping against the shared schema, the clock and the caller's rights. */
export function validatePing(raw: unknown, who: Principal, now: number, limits: ValidationLimits): Validated {
  // Usual case: the compiled check of the same schema accepts it; no copy is made.
  if (isPlainValidPing(raw)) return checkPing(raw, who, now, limits);
  const parsed = pingSchema.safeParse(raw);
  const r = raw as { id?: unknown; seq?: unknown } | null;
  // Echo only what identifies the ping (bounded: an error frame must not amplify a bad input).
  const id = typeof r?.id === 'string' ? r.id.slice(0, 64) : undefined;
  const seq = typeof r?.seq === 'number' && Number.isFinite(r.seq) ? r.seq : undefined;
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? '');
    const code: ErrorCode = COORD_FIELDS.has(field) ? 'INVALID_COORDINATES' : 'INVALID_PING';
    return { ok: false, code, message: `${field || 'ping'}: ${issue.message}`, id, seq };
  }
  return checkPing(parsed.data, who, now, limits);
}

/** Clock and ownership checks of a ping that matches the schema. */
function checkPing(ping: Ping, who: Principal, now: number, limits: ValidationLimits): Validated {
  if (ping.ts > now + limits.maxFutureMs) return { ok: false, code: 'TS_IN_FUTURE', message: `ts is ${ping.ts - now} ms in the future`, id: ping.id, seq: ping.seq };
  if (ping.ts < now - limits.maxAgeMs) return { ok: false, code: 'TS_TOO_OLD', message: `ts is older than ${limits.maxAgeMs} ms`, id: ping.id, seq: ping.seq };
  if (!who.fleet && ping.id !== who.sub) return { ok: false, code: 'NOT_YOUR_ENTITY', message: `token may publish only '${who.sub}'`, id: ping.id, seq: ping.seq };
  return { ok: true, ping };
}
