import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log/logger.js';
import { createKeys } from '../src/store/redis/keys.js';
import { createStreamReader, type ReadResult, type StreamEntry, type StreamsInfo } from './stream-reader.js';
import { writeBatch, type WriteResult } from './pg-writer.js';
import { backoffMs, isPoison, isTransient } from './errors.js';
import { setLagSource, workerMetrics } from './metrics.js';
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
 * Reads the active cell streams continuously (own pending after a restart, idle entries of
 * dead consumers once per flush, new entries) into memory, and writes what it holds to
 * PostGIS in one transaction every flush interval — start to start — or at once when
 * WORKER_MAX_BATCH entries are held (a backlog, or a rate above maxBatch per interval):
 * lag stays about one interval plus one write. The next batch is read while PostgreSQL
 * writes the current one, up to 2 × maxBatch (memory bound), and a read right before each
 * write takes what arrived up to that instant: in steady state a ping is in the first write
 * that starts after it reached Redis, never one later. XACK after COMMIT, then XTRIM of the acknowledged history. A failed
 * write keeps the batch and retries it with backoff, reading nothing new meanwhile (entries
 * stay pending in Redis, so nothing is lost if this process dies; another worker claims them
 * after claimIdleMs).
 */
export function createPersister(d: PersisterDeps): Persister {
  const { cfg, log } = d;
  const w = cfg.worker;
  const keys = createKeys(cfg.redis.keyPrefix);
  const reader = createStreamReader(d.redis, keys, w.consumerGroup, d.consumer, w.readCount);
  const status = createStatusPublisher(d.redis, keys.workerStatus(d.consumer), { instance: d.consumer, mode: w.mode, ttlMs: Math.max(30_000, 3 * w.flushIntervalMs) });
  /**
   * Entries held for the next write: reading goes on while a write is in flight up to this
   * bound, so a batch is never closed at maxBatch with pings already in Redis left for the
   * write after (at rates where a write takes longer than filling maxBatch they waited a
   * whole extra write).
   */
  const maxHeld = 2 * w.maxBatch;
  /** How often new entries are read between flushes. */
  const pollMs = Math.max(20, Math.min(1000, Math.floor(w.flushIntervalMs / 4)));
  let state: PersisterState = 'idle';
  let loop: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;
  let firstRead = true;
  /** XAUTOCLAIM once per flush cycle (it scans the whole pending list). */
  let claimDue = true;
  /** Entries read and not yet handed to a write. */
  let buffer: ReadResult = emptyBatch();
  /** A batch whose write failed: retried before anything new is read. */
  let carry: ReadResult | undefined;
  let retryAt = 0;
  let attempt = 0;
  let writing: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let lastStreams: string[] = [];
  const setState = (s: PersisterState): void => { log.info({ from: state, to: s }, 'persister state'); state = s; };
  const nudge = (): void => { const f = wake; wake = undefined; f?.(); };
  const pause = (ms: number): Promise<void> => new Promise((resolve) => {
    const t = setTimeout(() => { wake = undefined; resolve(); }, Math.max(0, ms));
    wake = () => { clearTimeout(t); resolve(); };
  });

  /**
   * One read round into the buffer; true when a stream may hold more than was read. The round's
   * budget is what the buffer may still take (maxHeld − held): own pending entries, XAUTOCLAIM
   * and new entries together, however many streams and whatever readCount, so the buffer never
   * holds more than maxHeld (before, the bound was checked only before a round, and one round
   * read readCount from every active stream, up to three times that after a restart).
   */
  async function readRound(): Promise<boolean> {
    const budget = maxHeld - heldIn(buffer);
    if (budget <= 0) return true;
    const streams = await reader.activeStreams(Date.now() - ACTIVE_WINDOW_MS);
    lastStreams = streams;
    if (streams.length === 0) return false;
    const r = await reader.read(streams, { own: firstRead, claim: claimDue, claimIdleMs: w.claimIdleMs, budget });
    firstRead = false;
    claimDue = false;
    // push in a loop, not push(...): a round may hold up to maxHeld entries (spread would overflow the stack)
    for (const e of r.entries) buffer.entries.push(e);
    for (const e of r.poison) buffer.poison.push(e);
    for (const e of r.gone) buffer.gone.push(e);
    buffer.more = r.more;
    const held = heldIn(buffer);
    workerMetrics.entriesHeld.set(held);
    log.debug({ streams: streams.length, budget, read: heldIn(r), held, maxHeld, more: r.more, writing: writing !== undefined }, 'read round');
    return r.more;
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

  interface Committed { res: WriteResult; endTimer: () => number }

  /**
   * Writes one batch (already read): dead letters, write, COMMIT. Throws on failure (batch kept
   * by the caller). Undefined for an empty batch (status refreshed).
   */
  async function commitBatch(batch: ReadResult): Promise<Committed | undefined> {
    if (heldIn(batch) === 0) {
      await report(undefined);
      return undefined;
    }
    const endTimer = workerMetrics.flushDuration.startTimer();
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
    return { res, endTimer };
  }

  /** After COMMIT: XACK, metrics, status (and XTRIM). */
  async function ackBatch(batch: ReadResult, c: Committed | undefined, readMs: number): Promise<FlushStats> {
    if (!c) return EMPTY;
    const { res } = c;
    const t1 = performance.now();
    await reader.ack(group([...batch.entries, ...batch.gone]));
    res.steps.read = readMs;
    res.steps.ack = Math.round(performance.now() - t1);
    const seconds = c.endTimer();
    workerMetrics.pingsRead.inc(batch.entries.length);
    workerMetrics.pingsFresh.inc(res.fresh);
    workerMetrics.rowsWritten.inc({ table: 'positions' }, res.positions);
    workerMetrics.rowsWritten.inc({ table: 'cell_stats' }, res.cellStats);
    await report({ pings: batch.entries.length, rows: res.positions, seconds });
    return { read: batch.entries.length, fresh: res.fresh, positions: res.positions, cellStats: res.cellStats, poison: 0, more: batch.more, steps: res.steps };
  }

  /** Write, COMMIT, XACK, metrics, status, one after the other (flushOnce, the final flush of stop()). */
  async function flushBatch(batch: ReadResult, readMs: number): Promise<FlushStats> {
    return ackBatch(batch, await commitBatch(batch), readMs);
  }

  /**
   * Acknowledgements run after their COMMIT but off the write path: the next write may start
   * while the previous batch is acked (XACK of 200,000 ids, the status and XTRIM take ≈ 1 s on
   * a busy box). One at a time, in commit order. A failed ack leaves the entries pending: they
   * are claimed again after claimIdleMs and rewritten, which changes nothing.
   */
  let acking: Promise<void> = Promise.resolve();

  /** Hands the buffer (or the failed batch) to a write that runs while the loop keeps reading. */
  function startWrite(readMs: number): void {
    const batch = carry ?? buffer;
    if (!carry) buffer = emptyBatch();
    workerMetrics.entriesHeld.set(heldIn(buffer));
    carry = batch;
    claimDue = true;
    const started = Date.now();
    writing = commitBatch(batch).then(
      (c) => {
        carry = undefined;
        attempt = 0;
        const committedMs = Date.now() - started;
        acking = acking.then(() => ackBatch(batch, c, readMs)).then(
          (s) => { if (s.read || s.poison) log.info({ ...s, ms: committedMs, acked_ms: Date.now() - started }, 'flushed'); },
          (err: unknown) => {
            workerMetrics.flushFailures.inc();
            log.warn({ err, entries: batch.entries.length }, 'ack after commit failed: the entries stay pending, are claimed again and rewritten (no change)');
          },
        );
      },
      (err: unknown) => {
        workerMetrics.flushFailures.inc();
        const wait = backoffMs(attempt++, RETRY_BASE_MS, RETRY_MAX_MS);
        retryAt = Date.now() + wait;
        log[isPoison(err) ? 'error' : 'warn']({ err, attempt, retryInMs: wait, carried: carry?.entries.length ?? 0 }, 'flush failed; batch kept and retried');
      },
    ).finally(() => { writing = undefined; nudge(); });
  }

  async function run(): Promise<void> {
    let nextFlushAt = Date.now(); // at once: own pending entries after a restart, a backlog
    let cycleStart = performance.now();
    while (state === 'running') {
      const failing = carry !== undefined && !writing;
      // Read (not while a failed batch waits for its retry: the streams buffer meanwhile).
      let more = false;
      if (!failing && heldIn(buffer) < maxHeld) {
        try {
          more = await readRound();
          // Catch-up: with no write in flight, start one at a quarter of maxBatch (the rest is read
          // while it writes); with one in flight, read on up to maxHeld.
          if (more && heldIn(buffer) < (writing ? maxHeld : Math.ceil(w.maxBatch / 4))) continue;
        } catch (err) {
          log.warn({ err }, 'stream read failed; retried');
          await pause(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 4));
          continue;
        }
      }
      if (state !== 'running') break;
      const now = Date.now();
      if (!writing) {
        if (failing) {
          if (now >= retryAt) startWrite(0);
          else await pause(retryAt - now);
          continue;
        }
        if (now >= nextFlushAt || heldIn(buffer) >= w.maxBatch || (more && heldIn(buffer) > 0)) {
          nextFlushAt = now + w.flushIntervalMs;
          const readMs = Math.round(performance.now() - cycleStart);
          cycleStart = performance.now();
          startWrite(readMs);
          continue;
        }
      }
      // Wait for the next read, the flush time, or the write in flight (when the buffer is full).
      if (writing) {
        if (heldIn(buffer) >= maxHeld) await writing;
        else if (!more) await pause(pollMs); // the write's end wakes it early
      } else if (!more) {
        await pause(Math.min(pollMs, Math.max(0, nextFlushAt - Date.now())));
      }
    }
    await writing;
    await acking;
  }

  /** Age (ms) of the oldest stream entry not persisted yet, from an inspection at most 1 s old. */
  let inspected: { at: number; oldestMs: number | undefined; pending: number; undelivered: number } = { at: 0, oldestMs: undefined, pending: 0, undelivered: 0 };
  let inspecting: Promise<void> | undefined;
  const note = (info: StreamsInfo): void => { inspected = { at: Date.now(), oldestMs: info.oldestMs, pending: info.pending, undelivered: info.undelivered }; };
  const lagMs = (): number => (inspected.oldestMs === undefined ? 0 : Math.max(0, Date.now() - inspected.oldestMs));
  async function currentLagMs(): Promise<number> {
    if (Date.now() - inspected.at > 1000) {
      inspecting ??= (async () => {
        try {
          const streams = await reader.activeStreams(Date.now() - ACTIVE_WINDOW_MS);
          note(await reader.inspect(streams, false));
        } catch (err) {
          log.warn({ err }, 'stream inspection failed');
        } finally {
          inspecting = undefined;
        }
      })();
      await inspecting;
    }
    return lagMs();
  }

  let lastPrune = Date.now();
  async function report(flushed: { pings: number; rows: number; seconds: number } | undefined): Promise<void> {
    try {
      if (Date.now() - lastPrune > PRUNE_EVERY_MS) {
        lastPrune = Date.now();
        const removed = await reader.pruneConsumers(lastStreams, CONSUMER_IDLE_MS);
        if (removed) log.info({ removed }, 'removed idle consumers of dead workers');
      }
      note(await reader.inspect(lastStreams, flushed !== undefined));
      workerMetrics.entriesPending.set(inspected.pending);
      workerMetrics.entriesUndelivered.set(inspected.undelivered);
      await status.publish({ state, lagMs: lagMs(), pending: inspected.pending, undelivered: inspected.undelivered, flushed });
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

  /** Reads one round and writes what is held now (also the final flush of stop()). */
  async function flushOnce(): Promise<FlushStats> {
    const t0 = performance.now();
    if (!carry) await readRound();
    const batch = carry ?? buffer;
    if (!carry) buffer = emptyBatch();
    workerMetrics.entriesHeld.set(heldIn(buffer));
    carry = batch;
    const s = await flushBatch(batch, Math.round(performance.now() - t0));
    carry = undefined;
    return s;
  }

  return {
    get state() { return state; },
    flushOnce,
    async start() {
      if (state !== 'idle') throw new Error(`persister cannot start from ${state}`);
      setState('running');
      setLagSource(currentLagMs);
      loop = run().catch((err: unknown) => { log.error({ err }, 'persister loop failed'); });
    },
    stop() {
      stopping ??= (async () => {
        if (state === 'running') setState('draining');
        nudge();
        await loop;
        // Entries already read are written too (else they wait for WORKER_CLAIM_IDLE_MS elsewhere);
        // a batch whose write is failing stays pending in Redis.
        if (!carry && heldIn(buffer) > 0) {
          const batch = buffer;
          buffer = emptyBatch();
          workerMetrics.entriesHeld.set(0);
          await flushBatch(batch, 0).then(
            (s) => log.info({ ...s }, 'flushed'),
            (err: unknown) => log.warn({ err }, 'final flush failed; entries stay pending'),
          );
        }
        setLagSource(undefined);
        setState('stopped');
        await status.clear().catch(() => undefined);
      })();
      return stopping;
    },
  };
}

/** Entries a batch holds: to write, to dead-letter, or to acknowledge as lost. */
function heldIn(b: ReadResult): number {
  return b.entries.length + b.poison.length + b.gone.length;
}

function emptyBatch(): ReadResult {
  return { entries: [], poison: [], gone: [], more: false };
}
