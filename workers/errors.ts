/**
 * Error classes that decide what a worker does with a failure (never the message text):
 * - PoisonEntryError: the entry itself is bad → dead-letter stream, ack, move on;
 * - anything else (PostgreSQL or Redis down, deadlock, timeout) is transient → keep the
 *   entries pending, retry with backoff; another worker may XAUTOCLAIM them meanwhile.
 */
export class PoisonEntryError extends Error {
  override readonly name = 'PoisonEntryError';
}

/**
 * PostgreSQL SQLSTATE classes that blame the data (22 data exception, 23 integrity
 * constraint): retrying the same rows can never succeed, so the batch is split to isolate
 * the entry. Everything else (08 connection, 40 deadlock, 53 resources, 57 shutdown, 42
 * schema not migrated yet, socket errors without SQLSTATE, timeouts) is transient: retry.
 */
const DATA_SQLSTATE_CLASSES = new Set(['22', '23']);

export function isPoison(err: unknown): err is PoisonEntryError {
  return err instanceof PoisonEntryError;
}

/** True when the database refused the data itself (see DATA_SQLSTATE_CLASSES). */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && DATA_SQLSTATE_CLASSES.has(code.slice(0, 2));
}

/** True for failures where retrying the same batch later can succeed. */
export function isTransient(err: unknown): boolean {
  return !isPoison(err) && !isDataError(err);
}

/** Exponential backoff with full jitter, capped. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, rand: () => number = Math.random): number {
  const ceil = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceil / 2 + (rand() * ceil) / 2);
}
