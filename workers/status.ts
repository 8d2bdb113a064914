import type { Redis } from 'ioredis';

/** What a worker publishes at `${prefix}worker:<instance>` (JSON string, PX ttl). */
export interface WorkerStatus {
  instance: string;
  mode: string;
  state: string;
  /** Age of the oldest stream entry not persisted yet, ms (0 = none). */
  lag_ms: number;
  /** Entries read and not acknowledged (all consumers of the streams this worker polls). */
  pending: number;
  /** Entries not yet read by any consumer. */
  undelivered: number;
  /** Pings and positions rows written per second over the last flush interval. */
  pings_per_s: number;
  rows_per_s: number;
  last_flush_ms: number | null;
  updated_at: number;
}

export function createStatusPublisher(redis: Redis, key: string, o: { instance: string; mode: string; ttlMs: number }) {
  let windowStart = Date.now();
  let pings = 0;
  let rows = 0;
  let rates = { pings: 0, rows: 0 };
  let lastFlushMs: number | null = null;
  return {
    async publish(s: { state: string; lagMs: number; pending: number; undelivered: number; flushed: { pings: number; rows: number; seconds: number } | undefined }): Promise<void> {
      const now = Date.now();
      if (s.flushed) { pings += s.flushed.pings; rows += s.flushed.rows; lastFlushMs = Math.round(s.flushed.seconds * 1000); }
      if (now - windowStart >= 5000) {
        const secs = (now - windowStart) / 1000;
        rates = { pings: Math.round(pings / secs), rows: Math.round(rows / secs) };
        windowStart = now; pings = 0; rows = 0;
      }
      const body: WorkerStatus = {
        instance: o.instance, mode: o.mode, state: s.state, lag_ms: s.lagMs, pending: s.pending, undelivered: s.undelivered,
        pings_per_s: rates.pings, rows_per_s: rates.rows, last_flush_ms: lastFlushMs, updated_at: now,
      };
      await redis.set(key, JSON.stringify(body), 'PX', o.ttlMs);
    },
    async clear(): Promise<void> {
      await redis.del(key);
    },
  };
}
