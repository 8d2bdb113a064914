import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log/logger.js';
import { createKeys } from '../src/store/redis/keys.js';
import { createStreamReader, type ReadResult, type StreamEntry } from './stream-reader.js';
import { writeBatch, type WriteResult } from './pg-writer.js';
import { backoffMs, isPoison, isTransient } from './errors.js';
import { workerMetrics } from './metrics.js';
import { createStatusPublisher } from './status.js';

export type PersisterState = 'idle' | 'running' | 'draining' | 'stopped';

export interface PersisterDeps {
  cfg: Readonly<Config>;
  log: Logger;
  redis: Redis;
  pg: pg.Pool;
  consumer: string;
  /** Fault injection for tests: wait this long between COMMIT and XACK. */
  delayAfterCommitMs?: number;
}

export interface FlushStats { read: number; fresh: number; positions: number; cellStats: number; poison: number; more: boolean; steps?: Record<string, number> }

export interface Persister {
  start(): Promise<void>;
  /** Finishes the flush in flight, then stops. Idempotent. */
  stop(): Promise<void>;
  /** One flush now (tests, shutdown). */
  flushOnce(): Promise<FlushStats>;
  readonly state: PersisterState;
}

const EMPTY: FlushStats = { read: 0, fresh: 0, positions: 0, cellStats: 0, poison: 0, more: false };
const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 15_000;
/** Cells that saw no ping for this long are no longer polled (their streams are drained by then). */
const ACTIVE_WINDOW_MS = 24 * 3600_000;
/** Consumers of dead workers (nothing pending, idle this long) leave the group. */
const CONSUMER_IDLE_MS = 3600_000;
const PRUNE_EVERY_MS = 600_000;

/**
 * Every flush interval: read what arrived on the active cell streams (own pending after a
 * restart, idle entries of dead consumers, new entries), write it to PostGIS in one
 * transaction, acknowledge after COMMIT, trim acknowledged history. A failed write keeps the
 * batch and retries it with backoff (entries stay pending in Redis meanwhile, so nothing is
 * lost if this process dies; another worker claims them after claimIdleMs).
 */
export function createPersister(d: PersisterDeps): Persister {
  const { cfg, log } = d;
  const w = cfg.worker;
  const keys = createKeys(cfg.redis.keyPrefix);
  const reader = createStreamReader(d.redis, keys, w.consumerGroup, d.consumer, w.readCount);
  const status = createStatusPublisher(d.redis, keys.workerStatus(d.consumer), { instance: d.consumer, mode: w.mode, ttlMs: Math.max(30_000, 3 * w.flushIntervalMs) });
  let state: PersisterState = 'idle';
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  let stopping: Promise<void> | undefined;
  let firstRead = true;
  /** A batch whose write failed: retried before anything new is read. */
  let carry: ReadResult | undefined;
  /** The next batch, read while the previous one was being written (only when behind). */
  let prefetch: Promise<ReadResult | undefined> | undefined;
  let attempt = 0;
  let lastStreams: string[] = [];
  const setState = (s: PersisterState): void => { log.info({ from: state, to: s }, 'persister state'); state = s; };

  async function readBatch(): Promise<ReadResult | undefined> {
    const streams = await reader.activeStreams(Date.now() - ACTIVE_WINDOW_MS);
    lastStreams = streams;
    if (streams.length === 0) return undefined;
    const batch: ReadResult = { entries: [], poison: [], gone: [], more: false };
    // Several reads (bounded) until maxBatch: catch-up after an outage goes fast.
    for (let round = 0; round < 50; round++) {
      const r = await reader.read(streams, { own: firstRead && round === 0, claim: round === 0, claimIdleMs: w.claimIdleMs });
      // concat, not push(...): batches hold up to maxBatch entries (spread would overflow the stack)
      batch.entries = batch.entries.concat(r.entries); batch.poison = batch.poison.concat(r.poison); batch.gone = batch.gone.concat(r.gone);
      batch.more = r.more;
      if (!r.more || batch.entries.length >= w.maxBatch) break;
    }
    firstRead = false;
    return batch;
  }

  async function write(entries: StreamEntry[]): Promise<WriteResult> {
    const client = await d.pg.connect();
    let failed: Error | undefined;
    try {
      await client.query('BEGIN');
      const res = await writeBatch(client, entries.map((e) => e.ping), w.mode);
      await client.query('COMMIT');
      return res;
    } catch (err) {
      failed = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      // A failed connection may be broken (server gone, proxy killed): discard it.
      client.release(failed);
    }
  }

  /**
   * A non-transient database error (by SQLSTATE class, e.g. a value PostgreSQL refuses) must
   * not block the cells: split the batch, commit the halves separately (idempotent), and
   * dead-letter the single entry that still fails. Transient errors propagate: retry later.
   */
  async function writeIsolating(entries: StreamEntry[]): Promise<WriteResult> {
    try {
      return await write(entries);
    } catch (err) {
      if (isTransient(err)) throw err;
      if (entries.length === 1) {
        const e = entries[0]!;
        const code = (err as { code?: string }).code ?? 'unknown';
        await reader.deadLetter([{ stream: e.stream, entryId: e.entryId, reason: `database rejected the ping (SQLSTATE ${code})` }]);
        await reader.ack(group([e]));
        workerMetrics.deadLetters.inc();
        log.warn({ stream: e.stream, entryId: e.entryId, code }, 'entry rejected by the database dead-lettered');
        return { fresh: 0, positions: 0, cellStats: 0, steps: {} };
      }
      log.warn({ err, entries: entries.length }, 'non-transient write error: splitting the batch');
      const mid = entries.length >> 1;
      const a = await writeIsolating(entries.slice(0, mid));
      const b = await writeIsolating(entries.slice(mid));
      return { fresh: a.fresh + b.fresh, positions: a.positions + b.positions, cellStats: a.cellStats + b.cellStats, steps: {} };
    }
  }

  async function flushOnce(): Promise<FlushStats> {
    const endTimer = workerMetrics.flushDuration.startTimer();
    const t0 = performance.now();
    let batch = carry;
    if (!batch) {
      const pre = prefetch;
      prefetch = undefined;
      batch = pre ? await pre : await readBatch();
    }
    const readMs = Math.round(performance.now() - t0);
    if (!batch || (batch.entries.length === 0 && batch.poison.length === 0 && batch.gone.length === 0)) {
      await report(undefined);
      return EMPTY;
    }
    carry = batch;
    if (batch.gone.length > 0) {
      log.error({ entries: batch.gone.length }, 'pending stream entries were trimmed before being persisted (lost): raise STREAM_MAX_LEN or add workers');
    }
    // Poison first: dead-letter + ack, so a bad entry never blocks its cell.
    if (batch.poison.length > 0) {
      await reader.deadLetter(batch.poison);
      await reader.ack(group(batch.poison));
      workerMetrics.deadLetters.inc(batch.poison.length);
      for (const p of batch.poison) log.warn({ stream: p.stream, entryId: p.entryId, reason: p.reason }, 'poison entry dead-lettered');
      batch.poison = [];
    }
    // Backlog (catch-up): read the next batch from Redis while PostgreSQL writes this one.
    if (batch.more && !prefetch) {
      prefetch = readBatch();
      prefetch.catch(() => undefined); // surfaces when awaited by the next flush
    }
    let res: WriteResult;
    try {
      res = await writeIsolating(batch.entries);
    } catch (err) {
      await report(undefined); // keep lag/pending visible while PostgreSQL is down
      throw err;
    }
    if (d.delayAfterCommitMs) {
      log.info({ entries: batch.entries.length }, 'flush committed (fault injection delay before ack)');
      await new Promise((r) => setTimeout(r, d.delayAfterCommitMs));
    }
    const t1 = performance.now();
    await reader.ack(group([...batch.entries, ...batch.gone]));
    carry = undefined;
    res.steps.read = readMs;
    res.steps.ack = Math.round(performance.now() - t1);
    const seconds = endTimer();
    workerMetrics.pingsRead.inc(batch.entries.length);
    workerMetrics.pingsFresh.inc(res.fresh);
    workerMetrics.rowsWritten.inc({ table: 'positions' }, res.positions);
    workerMetrics.rowsWritten.inc({ table: 'cell_stats' }, res.cellStats);
    await report({ pings: batch.entries.length, rows: res.positions, seconds });
    return { read: batch.entries.length, fresh: res.fresh, positions: res.positions, cellStats: res.cellStats, poison: 0, more: batch.more, steps: res.steps };
  }

  let lastPrune = Date.now();
  async function report(flushed: { pings: number; rows: number; seconds: number } | undefined): Promise<void> {
    try {
      if (Date.now() - lastPrune > PRUNE_EVERY_MS) {
        lastPrune = Date.now();
        const removed = await reader.pruneConsumers(lastStreams, CONSUMER_IDLE_MS);
        if (removed) log.info({ removed }, 'removed idle consumers of dead workers');
      }
      const info = await reader.inspect(lastStreams, flushed !== undefined);
      const lagMs = info.oldestMs === undefined ? 0 : Math.max(0, Date.now() - info.oldestMs);
      workerMetrics.entriesPending.set(info.pending);
      workerMetrics.entriesUndelivered.set(info.undelivered);
      workerMetrics.lag.set(lagMs / 1000);
      await status.publish({ state, lagMs, pending: info.pending, undelivered: info.undelivered, flushed });
    } catch (err) {
      log.warn({ err }, 'stream inspection failed');
    }
  }

  function group(list: { stream: string; entryId: string }[]): Map<string, string[]> {
    const byStream = new Map<string, string[]>();
    for (const e of list) {
      let ids = byStream.get(e.stream);
      if (!ids) byStream.set(e.stream, (ids = []));
      ids.push(e.entryId);
    }
    return byStream;
  }

  const tick = (): void => {
    if (state !== 'running') return;
    const started = Date.now();
    inFlight = flushOnce().then(
      (s) => {
        attempt = 0;
        if (s.read || s.poison) log.info({ ...s, ms: Date.now() - started }, 'flushed');
        return s.more ? 0 : w.flushIntervalMs;
      },
      (err: unknown) => {
        workerMetrics.flushFailures.inc();
        const wait = backoffMs(attempt++, RETRY_BASE_MS, RETRY_MAX_MS);
        log[isPoison(err) ? 'error' : 'warn']({ err, attempt, retryInMs: wait, carried: carry?.entries.length ?? 0 }, 'flush failed; batch kept and retried');
        return wait;
      },
    ).then((next) => {
      if (state === 'running') timer = setTimeout(tick, next);
    });
  };

  return {
    get state() { return state; },
    flushOnce,
    async start() {
      if (state !== 'idle') throw new Error(`persister cannot start from ${state}`);
      setState('running');
      timer = setTimeout(tick, Math.min(w.flushIntervalMs, 1000));
    },
    stop() {
      stopping ??= (async () => {
        setState('draining');
        clearTimeout(timer);
        await inFlight.catch(() => undefined);
        // A batch read ahead is written too (else it waits for WORKER_CLAIM_IDLE_MS elsewhere).
        if (prefetch && !carry) await flushOnce().catch((err: unknown) => log.warn({ err }, 'final flush failed; entries stay pending'));
        setState('stopped');
        await status.clear().catch(() => undefined);
      })();
      return stopping;
    },
  };
}
