import type { AcceptedPing } from '../src/protocol/ping.js';
import { ENTITY_ID_RE } from '../src/protocol/ping.js';
import { TENANT_RE } from '../src/auth/tokens.js';
import { decodeAccepted } from '../src/store/redis/codec.js';
import { PoisonEntryError } from './errors.js';

/** Persistence window of the default (window) mode and of the cell aggregates. */
export const WINDOW_MS = 10_000;

/** A decoded, checked stream entry, ready for the staging table. */
export interface StagedPing {
  tenant: string;
  id: string;
  ts: number;
  /** -1 when the ping had no seq. */
  seq: number;
  lon: number;
  lat: number;
  speed: number | null;
  heading: number | null;
  accuracy: number | null;
  kind: string | null;
  status: string | null;
  cell: string;
  cz: number;
  cx: number;
  cy: number;
  /** Window start, ms. */
  win: number;
}

const CELL_RE = /^(\d{1,2})\/(\d{1,7})\/(\d{1,7})$/;
/** Parsed ingest cells (few distinct values, one parse each). */
const cells = new Map<string, readonly [number, number, number]>();
function parseCell(cell: string): readonly [number, number, number] | undefined {
  let c = cells.get(cell);
  if (c === undefined) {
    const m = CELL_RE.exec(cell);
    if (!m) return undefined;
    if (cells.size > 100_000) cells.clear();
    c = [Number(m[1]), Number(m[2]), Number(m[3])] as const;
    cells.set(cell, c);
  }
  return c;
}
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const optNum = (v: unknown, name: string): number | null => {
  if (v === undefined || v === null) return null;
  if (!isNum(v)) throw new PoisonEntryError(`${name} is not a finite number`);
  return v;
};
const optStr = (v: unknown, name: string): string | null => {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length > 32) throw new PoisonEntryError(`${name} is not a string of at most 32 chars`);
  return v;
};

/**
 * Decodes the MessagePack `AcceptedPing` of a stream entry and checks every field the
 * database will see, so that a bad entry is rejected here (poison) and can never make a
 * whole COPY fail and block its cell.
 */
export function decodeEntry(value: Buffer | undefined): StagedPing {
  if (!value) throw new PoisonEntryError('entry has no ping field');
  let p: AcceptedPing;
  try {
    p = decodeAccepted(value);
  } catch (err) {
    throw new PoisonEntryError(`undecodable MessagePack: ${(err as Error).message}`);
  }
  return toStaged(p);
}

export function toStaged(p: AcceptedPing): StagedPing {
  if (p === null || typeof p !== 'object') throw new PoisonEntryError('ping is not an object');
  if (typeof p.tenant !== 'string' || !TENANT_RE.test(p.tenant)) throw new PoisonEntryError('bad tenant');
  if (typeof p.id !== 'string' || !ENTITY_ID_RE.test(p.id)) throw new PoisonEntryError('bad entity id');
  if (!Number.isSafeInteger(p.ts) || p.ts <= 0 || p.ts > 32503680000000) throw new PoisonEntryError('bad ts');
  if (p.seq !== undefined && p.seq !== null && (!Number.isSafeInteger(p.seq) || p.seq < 0)) throw new PoisonEntryError('bad seq');
  if (!isNum(p.lat) || Math.abs(p.lat) > 90 || !isNum(p.lon) || Math.abs(p.lon) > 180) throw new PoisonEntryError('bad coordinates');
  const c = typeof p.cell === 'string' ? parseCell(p.cell) : undefined;
  if (!c) throw new PoisonEntryError('bad cell');
  return {
    tenant: p.tenant, id: p.id, ts: p.ts, seq: p.seq ?? -1, lon: p.lon, lat: p.lat,
    speed: optNum(p.speed, 'speed'), heading: optNum(p.heading, 'heading'), accuracy: optNum(p.accuracy, 'accuracy'),
    kind: optStr(p.kind, 'kind'), status: optStr(p.status, 'status'),
    cell: p.cell, cz: c[0], cx: c[1], cy: c[2],
    win: p.ts - (p.ts % WINDOW_MS),
  };
}
