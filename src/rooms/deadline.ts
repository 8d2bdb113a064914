/** The longest delay setTimeout honours: beyond it Node warns and fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface Deadline {
  cancel(): void;
}

/**
 * Calls `fn` once at `deadline` (ms epoch), however far away: a delay beyond MAX_TIMER_MS is
 * waited in chunks, each re-armed with what is left. A deadline already past fires on the
 * next turn of the event loop. The timers are unref'd (they never keep a process alive).
 */
export function atDeadline(deadline: number, fn: () => void, maxChunkMs = MAX_TIMER_MS, now: () => number = Date.now): Deadline {
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const arm = (): void => {
    const left = deadline - now();
    timer = setTimeout(() => {
      if (cancelled) return;
      if (deadline - now() > 0) arm();
      else fn();
    }, Math.max(0, Math.min(left, maxChunkMs)));
    timer.unref();
  };
  arm();
  return {
    cancel() {
      cancelled = true;
      if (timer) clearTimeout(timer);
    },
  };
}
