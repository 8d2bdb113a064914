import type { AcceptedPing } from '../protocol/ping.js';
import type { LiveWriter } from '../store/redis/live-writer.js';
import type { Logger } from '../log/logger.js';

/** Receives pings once Redis has made them durable (e.g. the tile-room publisher). */
export type DurableListener = (pings: readonly AcceptedPing[]) => void;

export interface IngestBatcher {
  /** Resolves when the pings are durable in Redis; rejects if the write failed. */
  submit(pings: AcceptedPing[]): Promise<void>;
  /** Writes whatever is queued and waits for writes in flight. */
  drain(): Promise<void>;
}

interface Pending { pings: AcceptedPing[]; resolve: () => void; reject: (e: unknown) => void }

/**
 * Coalesces every submission of one event-loop turn into one Redis pipeline, so Redis
 * round trips grow with turns, not with pings.
 */
export function createIngestBatcher(writer: LiveWriter, onDurable: DurableListener, log: Logger): IngestBatcher {
  let queue: Pending[] = [];
  let scheduled = false;
  const inFlight = new Set<Promise<void>>();

  const flush = (): void => {
    scheduled = false;
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    const all = batch.length === 1 ? batch[0]!.pings : batch.flatMap((p) => p.pings);
    const p = writer.write(all).then(
      () => {
        for (const b of batch) b.resolve();
        try {
          onDurable(all);
        } catch (err) {
          log.error({ err }, 'durable listener failed');
        }
      },
      (err: unknown) => {
        log.error({ err, pings: all.length }, 'redis write failed');
        for (const b of batch) b.reject(err);
      },
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  return {
    submit(pings) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ pings, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    async drain() {
      flush();
      await Promise.allSettled([...inFlight]);
    },
  };
}
