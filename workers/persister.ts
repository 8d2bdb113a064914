import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log/logger.js';
import { createKeys } from '../src/store/redis/keys.js';
import { createStreamReader } from './stream-reader.js';
import { insertPositions } from './position-sink.js';

export type PersisterState = 'idle' | 'running' | 'draining' | 'stopped';

export interface PersisterDeps {
  cfg: Readonly<Config>;
  log: Logger;
  redis: Redis;
  pg: pg.Pool;
  consumer: string;
}

export interface FlushStats { read: number; written: number; poison: number }

export interface Persister {
  start(): Promise<void>;
  /** Finishes the flush in flight, then stops. Idempotent. */
  stop(): Promise<void>;
  /** One flush now (tests, shutdown). */
  flushOnce(): Promise<FlushStats>;
  readonly state: PersisterState;
}

/** Every flush interval: read new stream entries, write them to PostGIS, ack after commit. */
export function createPersister(d: PersisterDeps): Persister {
  const { cfg, log } = d;
  const keys = createKeys(cfg.redis.keyPrefix);
  const reader = createStreamReader(d.redis, keys, cfg.worker.consumerGroup, d.consumer, cfg.worker.readCount);
  let state: PersisterState = 'idle';
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  let stopping: Promise<void> | undefined;
  const setState = (s: PersisterState): void => { log.info({ from: state, to: s }, 'persister state'); state = s; };

  async function flushOnce(): Promise<FlushStats> {
    const since = Date.now() - 24 * 3600_000;
    const streams = await reader.activeStreams(since);
    if (streams.length === 0) return { read: 0, written: 0, poison: 0 };
    const { entries, poison } = await reader.read(streams);
    if (entries.length === 0 && poison.length === 0) return { read: 0, written: 0, poison: 0 };
    const client = await d.pg.connect();
    let written = 0;
    try {
      await client.query('BEGIN');
      written = await insertPositions(client, entries.map((e) => e.ping));
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    const byStream = new Map<string, string[]>();
    for (const e of [...entries, ...poison]) {
      let ids = byStream.get(e.stream);
      if (!ids) byStream.set(e.stream, (ids = []));
      ids.push(e.entryId);
    }
    for (const p of poison) log.warn({ stream: p.stream, entryId: p.entryId, reason: p.reason }, 'undecodable stream entry skipped');
    await reader.ack(byStream);
    return { read: entries.length, written, poison: poison.length };
  }

  const tick = (): void => {
    if (state !== 'running') return;
    const started = Date.now();
    inFlight = flushOnce().then(
      (s) => { if (s.read || s.poison) log.info({ ...s, ms: Date.now() - started }, 'flushed'); },
      (err: unknown) => log.error({ err }, 'flush failed; entries stay pending and are retried'),
    ).finally(() => {
      if (state === 'running') timer = setTimeout(tick, cfg.worker.flushIntervalMs);
    });
  };

  return {
    get state() { return state; },
    flushOnce,
    async start() {
      if (state !== 'idle') throw new Error(`persister cannot start from ${state}`);
      setState('running');
      timer = setTimeout(tick, cfg.worker.flushIntervalMs);
    },
    stop() {
      stopping ??= (async () => {
        setState('draining');
        clearTimeout(timer);
        await inFlight.catch(() => undefined);
        setState('stopped');
      })();
      return stopping;
    },
  };
}
