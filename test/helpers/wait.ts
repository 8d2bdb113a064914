/** Polling helpers shared by the integration tests. */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns something other than undefined; throws after `timeoutMs` with
 * `what` (a text, or a function giving one: e.g. the logs seen so far).
 */
export async function waitFor<T>(
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5000,
  what: string | (() => string) = 'condition',
  pollMs = 25,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(pollMs);
  }
}

/** Like waitFor, but any falsy value (false, 0, '', null) means "not yet". */
export function until<T>(fn: () => T | undefined | null | false, timeoutMs = 5000, what = 'condition'): Promise<T> {
  return waitFor(() => fn() || undefined, timeoutMs, what, 20);
}
