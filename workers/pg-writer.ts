/**
 * The persistence write of one batch, inside the caller's transaction: window mode
 * (pg/window-writer.ts) or raw mode (pg/raw-writer.ts, with its direct-COPY fast path).
 */
import type pg from 'pg';
import type { StagedPing } from './entry.js';
import type { PersistMode, WriteResult } from './pg/write-result.js';
import { EMPTY_RESULT, TEMP_TABLES, uniqueSorted } from './pg/shared.js';
import { writeWindows } from './pg/window-writer.js';
import { fastPathFits, writeRaw, writeRawFast } from './pg/raw-writer.js';

export type { PersistMode, WriteResult } from './pg/write-result.js';
export { uniqueSorted } from './pg/shared.js';
export { copyLine } from './pg/raw-writer.js';
export { windowGroups, windowLines } from './pg/window-writer.js';
export { numericParts, DecimalSum } from './pg/decimal-sum.js';

export interface WriteOptions {
  /** Raw mode: try the direct COPY into positions first (default true; false: tests compare both paths). */
  rawFastPath?: boolean;
}

/**
 * Writes one batch inside the caller's transaction: COPY into a session staging table, then
 * set-based INSERT … SELECT … ON CONFLICT. Rows depend only on the set of pings ever written
 * (see docs/persistence.md), never on how they were batched or retried.
 */
export async function writeBatch(client: pg.PoolClient, pings: readonly StagedPing[], mode: PersistMode, o: WriteOptions = {}): Promise<WriteResult> {
  const steps: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string): void => { const now = performance.now(); steps[name] = Math.round(now - t); t = now; };
  if (pings.length === 0) return EMPTY_RESULT(steps);
  const unique = uniqueSorted(pings);
  await client.query(TEMP_TABLES);
  if (mode === 'window') return writeWindows(client, unique, steps, lap);
  if ((o.rawFastPath ?? true) && fastPathFits(unique)) {
    const res = await writeRawFast(client, unique, steps, lap);
    if (res) return res;
  }
  return writeRaw(client, unique, steps, lap);
}

