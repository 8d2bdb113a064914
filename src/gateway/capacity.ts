import { readFileSync } from 'node:fs';

/** File descriptors kept free for Redis, PostgreSQL, logs and accept bursts. */
export const FD_RESERVE = 1024;

/** The soft RLIMIT_NOFILE of this process (Linux /proc), or undefined where unknown. */
export function fdSoftLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    const n = Number(soft);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How many client connections (drivers + map clients) the gateway accepts. `configured` > 0
 * wins (capped by the fd limit minus the reserve); 0 = the fd limit minus the reserve. Past it,
 * upgrades are refused with 503 instead of failing with EMFILE, which would also starve the
 * gateway's own Redis and PostgreSQL reconnects.
 */
export function resolveMaxConnections(configured: number, softLimit = fdSoftLimit()): number {
  const byFd = softLimit === undefined ? Infinity : Math.max(16, softLimit - FD_RESERVE);
  return configured > 0 ? Math.min(configured, byFd) : byFd;
}
