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
  meta: z.record(z.union([z.string().max(256), z.number(), z.boolean(), z.null()])).optional(),
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
