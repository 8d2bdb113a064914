import type { AcceptedPing } from '../protocol/ping.js';
import type { LiveEvents, LiveMove } from '../protocol/live.js';
import type { LiveWriter, Outcome } from '../store/redis/live-writer.js';
import type { Logger } from '../log/logger.js';
import { ingestMetrics } from './metrics.js';

/**
 * Called once per submission: with the outcomes of the whole batch and where this
 * submission's pings start in it (`outcomes[offset + i]` is ping i), or with the write error.
 * A callback rather than a promise: one fewer allocation chain per frame on the hot path.
 */
export type SubmitDone = (err: unknown, outcomes?: readonly Outcome[], offset?: number) => void;

export interface IngestBatcher {
  /** Calls `done` once the pings are durable in Redis (or the write failed). */
  submit(pings: AcceptedPing[], done: SubmitDone): void;
  /** Writes whatever is queued and waits for writes in flight. */
  drain(): Promise<void>;
  /** True while more than the configured number of pings wait for Redis: refuse new frames. */
  overloaded(): boolean;
}

export interface BatcherListeners {
  /** Live-state changes (LiveEvents.moved). */
  moved?: LiveEvents['moved'];
}

interface Pending { pings: AcceptedPing[]; done: SubmitDone }

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
 * under way, of every turn until one finishes) into one write (one script call; two pipelined
 * round trips with cluster-safe scripts), so Redis round trips grow with turns, not with pings.
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
          call(b.done, undefined, res.outcomes, off);
          off += b.pings.length;
        }
        notify(res.moves);
      },
      (err: unknown) => {
        endTimer();
        pending -= all.length;
        log.error({ err, pings: all.length }, 'redis write failed');
        for (const b of batch) call(b.done, err);
      },
    ).finally(() => {
      inFlight.delete(p);
      schedule();
    });
    inFlight.add(p);
  };

  function call(done: SubmitDone, err: unknown, outcomes?: readonly Outcome[], offset?: number): void {
    try {
      done(err, outcomes, offset);
    } catch (e) {
      log.error({ err: e }, 'ingest submission callback failed');
    }
  }

  function notify(moves: LiveMove[]): void {
    if (moves.length === 0) return;
    try {
      listeners.moved?.(moves);
    } catch (err) {
      log.error({ err }, 'live-event listener failed');
    }
  }

  return {
    submit(pings, done) {
      pending += pings.length;
      queue.push({ pings, done });
      schedule();
    },
    async drain() {
      flush(true);
      await Promise.allSettled([...inFlight]);
    },
    overloaded: () => pending >= maxPendingPings,
  };
}
