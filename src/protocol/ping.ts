import { z } from 'zod';

/** Web Mercator (and Redis GEO) latitude limit. */
export const MAX_MERCATOR_LAT = 85.05112878;
export const MAX_META_BYTES = 512;

export const ENTITY_ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;

/** One position report from a driver or sensor. Defined once; the HTTP and WS paths share it. */
export const pingSchema = z.object({
  id: z.string().regex(ENTITY_ID_RE, 'id: 1-64 chars of A-Z a-z 0-9 . _ : -'),
  lat: z.number().finite().min(-MAX_MERCATOR_LAT).max(MAX_MERCATOR_LAT),
  lon: z.number().finite().min(-180).max(180),
  /** Milliseconds since the epoch, when the fix was taken. */
  ts: z.number().int().positive(),
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  /** m/s */
  speed: z.number().finite().min(0).max(150).optional(),
  /** degrees clockwise from north */
  heading: z.number().finite().min(0).max(360).optional(),
  /** metres */
  accuracy: z.number().finite().min(0).max(100000).optional(),
  kind: z.string().max(32).optional(),
  status: z.string().max(32).optional(),
  /** Flat, at most MAX_META_BYTES as JSON: it is stored with every ping (stream entry and live state). */
  meta: z.record(z.union([z.string().max(256), z.number(), z.boolean(), z.null()]))
    .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= MAX_META_BYTES, { message: `meta: at most ${MAX_META_BYTES} bytes as JSON` })
    .optional(),
}).strict();

export type Ping = z.infer<typeof pingSchema>;

/** A ping accepted by the gateway, with what the server knows about it. */
export interface AcceptedPing extends Ping {
  tenant: string;
  /** Ingest cell, `z/x/y`. */
  cell: string;
  /** Server receive time, ms. */
  rx: number;
}

const PING_KEYS = new Set(['id', 'lat', 'lon', 'ts', 'seq', 'speed', 'heading', 'accuracy', 'kind', 'status', 'meta']);
const inRange = (v: unknown, min: number, max: number): boolean => typeof v === 'number' && v >= min && v <= max;
const optRange = (v: unknown, min: number, max: number): boolean => v === undefined || inRange(v, min, max);
const optStr32 = (v: unknown): boolean => v === undefined || (typeof v === 'string' && v.length <= 32);

/**
 * The hot path's compiled form of `pingSchema` (DESIGN 3: "the hot path may use a faster check
 * of the same schema"): true exactly when `pingSchema.safeParse(raw).success` would be, for
 * pings without `meta` (with `meta` it returns false and the caller asks zod). A unit test
 * checks the two agree on thousands of generated valid and invalid pings. The caller uses zod
 * for the error message of a ping this refuses.
 */
export function isPlainValidPing(raw: unknown): raw is Ping {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || Object.getPrototypeOf(raw) !== Object.prototype) return false;
  const r = raw as Record<string, unknown>;
  for (const k in r) if (!PING_KEYS.has(k)) return false;
  if (r.meta !== undefined) return false;
  const { id, ts, seq } = r;
  // NaN fails every comparison; ±Infinity fails the ranges (lat, lon, speed, …) or isInteger (ts, seq).
  return typeof id === 'string' && ENTITY_ID_RE.test(id)
    && inRange(r.lat, -MAX_MERCATOR_LAT, MAX_MERCATOR_LAT) && inRange(r.lon, -180, 180)
    && typeof ts === 'number' && Number.isInteger(ts) && ts > 0
    && (seq === undefined || (typeof seq === 'number' && Number.isInteger(seq) && seq >= 0 && seq <= Number.MAX_SAFE_INTEGER))
    && optRange(r.speed, 0, 150) && optRange(r.heading, 0, 360) && optRange(r.accuracy, 0, 100000)
    && optStr32(r.kind) && optStr32(r.status);
}
