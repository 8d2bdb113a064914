import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startWorker, type Child } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import { createKeys } from '../../src/store/redis/keys.js';
import { encodeAccepted, STREAM_FIELD } from '../../src/store/redis/codec.js';
import { createStreamReader } from '../../workers/stream-reader.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import {
  WIN, expectedPositions, expectedCells, uniquePings, persistedPings, ledgerKeys, xaddPings, readPositions, readCells, assertRowsMatch,
  waitFor, waitNoPending, streamsOf,
} from './worker-model.js';

/**
 * The memory bound: a worker never holds more than 2 × WORKER_MAX_BATCH entries read for the
 * next write, however many streams have a backlog and whatever WORKER_READ_COUNT is — also in
 * the first round after a restart (own pending entries, XAUTOCLAIM of another consumer's, new
 * entries). Before, the bound was checked only before a read round, and one round read
 * WORKER_READ_COUNT entries from every stream (up to three times that after a restart): with a
 * backlog over many streams a worker could hold streams × WORKER_READ_COUNT × 3 entries at
 * once and run out of memory, again after every restart.
 *
 * Every read round logs (debug) `held`, the entries held after it (counted by the persister, not
 * by the reader that applies the budget); every write logs `read`, the entries it wrote.
 */
let redis: Redis;
before(() => { redis = new Redis(testServices().redisUrl); });
after(async () => { await redis.quit(); });

/** `cells` distinct ingest cells (zoom 13 is ≈ 0.044° wide), `entities` per cell, `perEntity` pings each. */
function backlog(cells: number, entities: number, perEntity: number, t0: number, idBase: string): AcceptedPing[] {
  const out: AcceptedPing[] = [];
  for (let c = 0; c < cells; c++) {
    for (let e = 0; e < entities; e++) {
      for (let s = 1; s <= perEntity; s++) {
        const lat = 41.15 + (c % 5) * 0.05 + e * 1e-4 + s * 1e-6, lon = -8.70 + Math.floor(c / 5) * 0.05 + s * 1e-6;
        out.push({ tenant: 'acme', id: `${idBase}-${c}-${e}`, ts: t0 + s * 450 + e * 7, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), speed: (s * 7 + e + c) % 30 });
      }
    }
  }
  return out;
}

/** Entries held after each read round and entries of each write, from the worker's logs. */
function assertBound(worker: Child, maxHeld: number, what: string): void {
  const rounds = worker.logs.filter((l) => l.msg === 'read round');
  assert.ok(rounds.length > 0, `${what}: read rounds logged`);
  for (const r of rounds) assert.equal(r.maxHeld, maxHeld, `${what}: the bound the worker uses`);
  const held = rounds.map((r) => Number(r.held));
  const worst = Math.max(...held);
  assert.ok(worst <= maxHeld, `${what}: at most ${maxHeld} entries held after any read round (max ${worst}; rounds: ${held.join(',')})`);
  const writes = worker.logs.filter((l) => l.msg === 'flushed').map((l) => Number(l.read));
  assert.ok(writes.length > 0, `${what}: writes logged`);
  assert.ok(Math.max(...writes) <= maxHeld, `${what}: no write of more than ${maxHeld} entries (${writes.join(',')})`);
}

interface Run { client: pg.Client; prefix: string; env: Record<string, string> }

async function withDatabase(run: (r: Run) => Promise<void>): Promise<void> {
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const env = { REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, LOG_LEVEL: 'debug' };
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await run({ client, prefix, env });
  } finally {
    await client.end();
    await db.drop();
  }
}

test('a backlog in 40 streams: at most 2 × WORKER_MAX_BATCH held after every read round, every ping persisted once', async () => {
  await withDatabase(async ({ client, prefix, env }) => {
    const t0 = Math.floor((Date.now() - 30 * 60_000) / WIN) * WIN;
    const all = backlog(40, 3, 20, t0, 'bk'); // 2,400 pings, 60 per stream
    assert.equal(streamsOf(prefix, all).length, 40);
    await xaddPings(redis, prefix, all);
    // maxHeld 100; one unbudgeted round would read 40 streams × 40 = 1,600 entries.
    const worker = await startWorker({ ...env, INSTANCE_ID: 'budget-w', FLUSH_INTERVAL_MS: '1000', WORKER_MAX_BATCH: '50', WORKER_READ_COUNT: '40' });
    try {
      const want = uniquePings(all).length;
      await waitFor(async () => ((await ledgerKeys(client)) === want ? true : undefined), 90000, `${want} pings persisted`);
      await waitNoPending(redis, prefix, all);
      assertBound(worker, 100, 'backlog');
      assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions (budgeted reads)');
      assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], 'cell_stats (budgeted reads)');
    } finally {
      assert.equal(await worker.stop(), 0);
    }
  });
});

test('the first round after a restart (own pending, XAUTOCLAIM, new entries) keeps the bound too; raw mode, exactly once', async () => {
  await withDatabase(async ({ client, prefix, env }) => {
    const t0 = Math.floor((Date.now() - 40 * 60_000) / WIN) * WIN;
    const own = backlog(30, 2, 15, t0, 'own'); // 900: pending for this worker's INSTANCE_ID (a previous incarnation read them)
    const ghost = backlog(30, 2, 15, t0 + 100_000, 'ghost'); // 900: pending for a dead consumer, idle past WORKER_CLAIM_IDLE_MS
    const fresh = backlog(30, 2, 15, t0 + 200_000, 'new'); // 900: never delivered
    const streams = streamsOf(prefix, own);
    assert.equal(streams.length, 30);
    const readAs = async (consumer: string): Promise<number> => {
      let n = 0;
      for (const s of streams) {
        const r = (await redis.xreadgroup('GROUP', 'persist', consumer, 'COUNT', 1000, 'STREAMS', s, '>')) as [string, unknown[]][] | null;
        n += r?.[0]?.[1].length ?? 0;
      }
      return n;
    };
    for (const s of streams) await redis.xgroup('CREATE', s, 'persist', '0', 'MKSTREAM');
    await xaddPings(redis, prefix, own);
    assert.equal(await readAs('budget-r'), own.length);
    await xaddPings(redis, prefix, ghost);
    assert.equal(await readAs('budget-ghost'), ghost.length);
    await xaddPings(redis, prefix, fresh);
    await new Promise((r) => setTimeout(r, 1300)); // past WORKER_CLAIM_IDLE_MS: every pending entry is claimable
    // maxHeld 50; the unbudgeted first round would read 30 streams × 3 × 40 = 2,700 entries.
    const worker = await startWorker({
      ...env, INSTANCE_ID: 'budget-r', PERSIST_MODE: 'raw', FLUSH_INTERVAL_MS: '1000', WORKER_MAX_BATCH: '25', WORKER_READ_COUNT: '40', WORKER_CLAIM_IDLE_MS: '1000',
    });
    try {
      const all = [...own, ...ghost, ...fresh];
      const want = uniquePings(all).length;
      await waitFor(async () => ((await persistedPings(client)) === want ? true : undefined), 90000, `${want} pings persisted`);
      await waitNoPending(redis, prefix, all);
      assertBound(worker, 50, 'restart');
      assertRowsMatch(await readPositions(client), expectedPositions(all, 'raw'), ['speed', 'mean_speed'], 'positions (restart, budgeted reads)');
      assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], 'cell_stats (restart, budgeted reads)');
    } finally {
      assert.equal(await worker.stop(), 0);
    }
  });
});

/**
 * The reader alone, round by round: 12 streams, each with 10 entries pending for this consumer
 * (a previous process of the same name), 10 pending for a dead consumer (claimable) and 10 new.
 * A round's entries are acknowledged after the next round (as after a write).
 */
async function readerRounds(budget: number, count: number): Promise<void> {
  const prefix = randomKeyPrefix();
  const streams = Array.from({ length: 12 }, (_, i) => `${prefix}rb:${String(i).padStart(2, '0')}`);
  const kindOf = new Map<string, 'own' | 'ghost' | 'new'>();
  const add = async (kind: 'own' | 'ghost' | 'new'): Promise<void> => {
    for (const [i, s] of streams.entries()) {
      for (let k = 0; k < 10; k++) {
        const ping: AcceptedPing = { tenant: 'acme', id: `${kind}-${i}`, ts: 1_700_000_000_000 + k * 1000, seq: k, lat: 41.1, lon: -8.6, rx: 1, cell: '13/3900/3066' };
        kindOf.set(`${s} ${await redis.xadd(s, '*', STREAM_FIELD, encodeAccepted(ping))}`, kind);
      }
    }
  };
  const readAs = async (consumer: string): Promise<void> => {
    for (const s of streams) await redis.xreadgroup('GROUP', 'persist', consumer, 'COUNT', 100, 'STREAMS', s, '>');
  };
  try {
    for (const s of streams) await redis.xgroup('CREATE', s, 'persist', '0', 'MKSTREAM');
    await add('own');
    await readAs('me');
    await add('ghost');
    await readAs('ghost');
    await add('new');
    await new Promise((r) => setTimeout(r, 1100)); // past claimIdleMs below: own and ghost entries are all claimable

    const reader = createStreamReader(redis, createKeys(prefix), 'persist', 'me', count);
    const seen = new Map<string, number>(); // stream + id → round
    const firstRoundOf = new Map<string, number>();
    const ack = async (list: { stream: string; entryId: string }[]): Promise<void> => {
      for (const s of streams) {
        const ids = list.filter((e) => e.stream === s).map((e) => e.entryId);
        if (ids.length) await redis.xack(s, 'persist', ...ids);
      }
    };
    let held: { stream: string; entryId: string }[] = [];
    let round = 0;
    for (let idle = 0; idle < 2 && round < 400; round++) {
      const r = await reader.read(streams, { own: round === 0, claim: round === 0, claimIdleMs: 1000, budget });
      const got = [...r.entries, ...r.poison, ...r.gone];
      assert.ok(got.length <= budget, `round ${round}: ${got.length} entries for a budget of ${budget}`);
      assert.equal(r.poison.length + r.gone.length, 0);
      for (const e of got) {
        const k = `${e.stream} ${e.entryId}`;
        assert.ok(!seen.has(k), `${k} (${kindOf.get(k)}) read twice (rounds ${seen.get(k)} and ${round})`);
        seen.set(k, round);
        if (!firstRoundOf.has(e.stream)) firstRoundOf.set(e.stream, round);
      }
      // The previous round's entries are written and acknowledged now: entries read in a round
      // are still pending during the next one (as while a write runs).
      await ack(held);
      held = got;
      idle = got.length === 0 && !r.more ? idle + 1 : 0;
    }
    await ack(held);
    assert.equal(seen.size, kindOf.size, `every entry read once (${seen.size} of ${kindOf.size}, ${round} rounds)`);
    // No starvation: every stream is served within the first ceil(streams / budget) rounds.
    const within = Math.ceil(streams.length / Math.min(budget, streams.length));
    for (const s of streams) assert.ok((firstRoundOf.get(s) ?? Infinity) < within, `${s} first served in round ${firstRoundOf.get(s)} (budget ${budget})`);
    // Per stream: this consumer's own pending entries come before any claimed or new one (a
    // claim or new read during them could return an entry the own read returns again).
    for (const s of streams) {
      const rounds = (kind: string): number[] => [...seen].filter(([k]) => k.startsWith(`${s} `) && kindOf.get(k) === kind).map(([, r]) => r);
      assert.equal(rounds('own').length, 10);
      assert.ok(Math.max(...rounds('own')) <= Math.min(...rounds('ghost'), ...rounds('new')), `${s}: own pending entries first`);
    }
    for (const s of streams) {
      const [n] = (await redis.xpending(s, 'persist')) as [number];
      assert.equal(Number(n), 0, `${s}: nothing pending`);
    }
  } finally {
    await redis.del(...streams);
  }
}

test('stream reader: a budget smaller than the number of streams: within it every round, every entry once, no stream starved', async () => {
  await readerRounds(5, 4);
});

test('stream reader: a budget larger than one round of own pending entries: the rest goes to claims and new entries of other streams only', async () => {
  await readerRounds(30, 2);
});
