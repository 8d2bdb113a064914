/**
 * PostgreSQL COPY text format for the persistence writers: escaping, timestamps, arrays,
 * float4/float8 as the staged SQL path would read them, hex EWKB points, and the COPY itself.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';

export const esc = (s: string): string => s.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
export const opt = (v: number | string | null): string => (v === null ? '\\N' : typeof v === 'string' ? esc(v) : String(v));

/** ISO-8601 of a ms timestamp; the part up to the second is cached (many pings share it). */
const isoSeconds = new Map<number, string>();
export function isoMs(ms: number): string {
  const sec = Math.floor(ms / 1000);
  let head = isoSeconds.get(sec);
  if (head === undefined) {
    if (isoSeconds.size > 50_000) isoSeconds.clear();
    head = new Date(sec * 1000).toISOString().slice(0, -4);
    isoSeconds.set(sec, head);
  }
  const f = ms - sec * 1000;
  return `${head}${f < 10 ? '00' : f < 100 ? '0' : ''}${f}Z`;
}

export function* chunks<T>(items: readonly T[], line: (x: T) => string, size = 2000): Generator<string> {
  for (let i = 0; i < items.length; i += size) {
    let s = '';
    for (let j = i; j < Math.min(items.length, i + size); j++) s += line(items[j]!);
    yield s;
  }
}

export const arr = (xs: (number | null)[]): string => `{${xs.map((x) => (x === null ? 'NULL' : String(x))).join(',')}}`;
export const copyInto = (client: pg.PoolClient, table: string, lines: Iterable<string>): Promise<void> =>
  pipeline(Readable.from(lines), client.query(copyStreams.from(`COPY ${table} FROM STDIN`)));

/** hex EWKB of ST_SetSRID(ST_MakePoint(lon, lat), 4326): little endian, type Point with the SRID flag, SRID 4326. */
const EWKB_POINT_4326 = '0101000020e6100000';
const ewkbXY = Buffer.alloc(16);
/** float8 as the staged path reads it: float8in(String(x)) is x, but String(-0) is "0". */
export const f8 = (x: number): number => (x === 0 ? 0 : x);
export function ewkbPoint(lon: number, lat: number): string {
  ewkbXY.writeDoubleLE(f8(lon), 0);
  ewkbXY.writeDoubleLE(f8(lat), 8);
  return EWKB_POINT_4326 + ewkbXY.toString('hex');
}

/**
 * A `real` column given as text: the float4 nearest to the double, printed so that float4in
 * reads exactly it — what the staged path's float8 → real cast stores (no double rounding
 * through the decimal text). realFits: a value that cast accepts and that is not subnormal;
 * anything else keeps the batch on the staged path (and its errors).
 */
export const real = (v: number | null): string => (v === null ? '\\N' : String(Math.fround(v)));
const FLT_MIN = 1.1754943508222875e-38;
export const realFits = (v: number | null): boolean => {
  if (v === null || v === 0) return true;
  const f = Math.abs(Math.fround(v));
  return f >= FLT_MIN && f !== Infinity;
};

