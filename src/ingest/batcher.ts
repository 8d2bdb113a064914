import type { AcceptedPing } from '../protocol/ping.js';
import type { LiveEvents, LiveMove } from '../protocol/live.js';
import type { LiveWriter, Outcome } from '../store/redis/live-writer.js';
import type { Logger } from '../log/logger.js';
import { ingestMetrics } from './metrics.js';

export interface IngestBatcher {
  /** Resolves with one outcome per ping once durable in Redis; rejects if the write failed. */
  submit(pings: AcceptedPing[]): Promise<Outcome[]>;
  /** Writes whatever is queued and waits for writes in flight. */
  drain(): Promise<void>;
  /** True while more than the configured number of pings wait for Redis: refuse new frames. */
  overloaded(): boolean;
}

export interface BatcherListeners {
  /** Live-state changes (LiveEvents.moved). */
  moved?: LiveEvents['moved'];
}

interface Pending { pings: AcceptedPing[]; resolve: (o: Outcome[]) => void; reject: (e: unknown) => void }

export interface BatcherLimits {
  /** Admission control: above this many pings waiting for Redis, overloaded() is true. */
  maxPendingPings?: number;
  /**
   * Batches written to Redis at once. Past it, submissions wait for a write to finish and go
   * together in the next batch: under load batches grow (fewer script calls per ping) instead
   * of more small writes queueing up in Redis.
   */
  maxWritesInFlight?: number;
}

/**
 * Coalesces every submission of one event-loop turn (or, while `maxWritesInFlight` writes are
 * under way, of every turn until one finishes) into one write (two pipelined round trips), so
 * Redis round trips grow with turns, not with pings.
 */
export function createIngestBatcher(writer: LiveWriter, listeners: BatcherListeners, log: Logger, limits: BatcherLimits = {}): IngestBatcher {
  const maxPendingPings = limits.maxPendingPings ?? Infinity;
  const maxWrites = limits.maxWritesInFlight ?? Infinity;
  let queue: Pending[] = [];
  /** Pings queued or in flight to Redis (admission control, so overload cannot grow memory without bound). */
  let pending = 0;
  let scheduled = false;
  const inFlight = new Set<Promise<void>>();

  const schedule = (): void => {
    if (scheduled || queue.length === 0) return;
    scheduled = true;
    setImmediate(flush);
  };

  const flush = (force = false): void => {
    scheduled = false;
    if (!force && inFlight.size >= maxWrites) return; // the next write that finishes schedules this one
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    const all = batch.length === 1 ? batch[0]!.pings : batch.flatMap((p) => p.pings);
    ingestMetrics.batchSize.observe(all.length);
    const endTimer = ingestMetrics.redisWrite.startTimer();
    const p = writer.write(all).then(
      (res) => {
        endTimer();
        pending -= all.length;
        let off = 0;
        for (const b of batch) {
          b.resolve(res.outcomes.slice(off, off + b.pings.length));
          off += b.pings.length;
        }
        notify(res.moves);
      },
      (err: unknown) => {
        endTimer();
        pending -= all.length;
        log.error({ err, pings: all.length }, 'redis write failed');
        for (const b of batch) b.reject(err);
      },
    ).finally(() => {
      inFlight.delete(p);
      schedule();
    });
    inFlight.add(p);
  };

  function notify(moves: LiveMove[]): void {
    if (moves.length === 0) return;
    try {
      listeners.moved?.(moves);
    } catch (err) {
      log.error({ err }, 'live-event listener failed');
    }
  }

  return {
    submit(pings) {
      return new Promise<Outcome[]>((resolve, reject) => {
        pending += pings.length;
        queue.push({ pings, resolve, reject });
        schedule();
      });
    },
    async drain() {
      flush(true);
      await Promise.allSettled([...inFlight]);
    },
    overloaded: () => pending >= maxPendingPings,
  };
}
