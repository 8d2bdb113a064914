import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startWorker, type Child } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { WIN, expectedPositions, expectedCells, uniquePings, xaddPings, readPositions, readCells, assertRowsMatch, waitFor, waitNoPending, ledgerKeys } from './worker-model.js';

/**
 * Three workers share the same cell streams at once (small reads, short interval), while
 * entities zig-zag between cells so that one entity's window is written by several workers
 * and the same pings arrive twice: rows stay exactly those of the model.
 */
let redis: Redis;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const workers: Child[] = [];
before(async () => { redis = new Redis(testServices().redisUrl); db = await createTestDatabase(); });
after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await redis.quit();
  await db.drop();
});

test('three concurrent workers: exactly-once rows and aggregates', async () => {
  const prefix = randomKeyPrefix();
  const env = { REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '150', WORKER_READ_COUNT: '25' };
  for (let i = 0; i < 3; i++) workers.push(await startWorker({ ...env, INSTANCE_ID: `cw-${i}` }));
  const t0 = Math.floor((Date.now() - 20 * 60_000) / WIN) * WIN;
  const all: AcceptedPing[] = [];
  for (let e = 0; e < 12; e++) {
    for (let s = 1; s <= 50; s++) {
      const lat = 41.15 + ((s + e) % 4) * 0.05, lon = -8.61 + (e % 3) * 0.05; // a different cell every ping
      all.push({ tenant: 'acme', id: `z-${e}`, ts: t0 + s * 700 + e * 13, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), speed: (s * 3 + e) % 25 });
    }
  }
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    for (let i = 0; i < 6; i++) {
      const part = all.filter((_, j) => j % 6 === i);
      await xaddPings(redis, prefix, [...part, ...part.slice(0, 20)]);
      await new Promise((r) => setTimeout(r, 120));
    }
    const want = uniquePings(all).length;
    await waitFor(async () => (await ledgerKeys(client) === want ? true : undefined), 40000, `${want} pings`);
    await waitNoPending(redis, prefix, all);
    const flushedBy = workers.filter((w) => w.logs.some((l) => l.msg === 'flushed')).length;
    assert.ok(flushedBy >= 2, `several workers shared the work (${flushedBy})`);
    assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions (3 workers)');
    assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], 'cell_stats (3 workers)');
  } finally {
    await client.end();
  }
});
