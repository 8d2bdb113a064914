/**
 * Error classes that decide what a worker does with a failure (never the message text):
 * - PoisonEntryError: the entry itself is bad → dead-letter stream, ack, move on;
 * - anything else (PostgreSQL or Redis down, deadlock, timeout) is transient → keep the
 *   entries pending, retry with backoff; another worker may XAUTOCLAIM them meanwhile.
 */
export class PoisonEntryError extends Error {
  override readonly name = 'PoisonEntryError';
}

/** PostgreSQL SQLSTATE classes that say "try again later" (connection, resources, conflicts). */
const TRANSIENT_SQLSTATE_CLASSES = new Set(['08', '40', '53', '57', '58']);

export function isPoison(err: unknown): err is PoisonEntryError {
  return err instanceof PoisonEntryError;
}

/** True for failures where retrying the same batch later can succeed. */
export function isTransient(err: unknown): boolean {
  if (isPoison(err)) return false;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return TRANSIENT_SQLSTATE_CLASSES.has(code.slice(0, 2));
  // No SQLSTATE: socket errors (ECONNREFUSED, ECONNRESET…), pool/connect timeouts.
  return true;
}

/** Exponential backoff with full jitter, capped. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, rand: () => number = Math.random): number {
  const ceil = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceil / 2 + (rand() * ceil) / 2);
}
