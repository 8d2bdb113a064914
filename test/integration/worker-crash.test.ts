import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startWorker, startNode } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import { createKeys } from '../../src/store/redis/keys.js';
import { createStreamReader } from '../../workers/stream-reader.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { WIN, expectedPositions, expectedCells, uniquePings, xaddPings, readPositions, readCells, assertRowsMatch, waitFor, waitNoPending, pendingEntries, streamsOf, ledgerKeys } from './worker-model.js';

/**
 * kill -9 of a worker between COMMIT and XACK (fault-injection delay), and of another one at
 * an arbitrary moment of a large flush: the next worker claims the pending entries
 * (XAUTOCLAIM after WORKER_CLAIM_IDLE_MS) and the rows are exactly those of an
 * uninterrupted run.
 */
let redis: Redis;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let client: pg.Client;
const prefix = randomKeyPrefix();

before(async () => {
  redis = new Redis(testServices().redisUrl);
  db = await createTestDatabase();
});
after(async () => {
  await client?.end();
  await redis.quit();
  await db.drop();
});

function fleet(n: number, perEntity: number, t0: number, idBase: string): AcceptedPing[] {
  const out: AcceptedPing[] = [];
  for (let e = 0; e < n; e++) {
    for (let s = 1; s <= perEntity; s++) {
      const lat = 41.10 + (e % 10) * 0.02 + s * 1e-5, lon = -8.70 + Math.floor(e / 10) * 0.03 + s * 1e-5;
      out.push({ tenant: 'acme', id: `${idBase}-${e}`, ts: t0 + s * 997 + e, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), speed: (s * 7 + e) % 30 });
    }
  }
  return out;
}

test('kill -9 after commit before ack, and mid-flush: exactly-once rows', async () => {
  const env = {
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '300',
    WORKER_CLAIM_IDLE_MS: '1000', WORKER_READ_COUNT: '400',
  };
  const t0 = Math.floor((Date.now() - 30 * 60_000) / WIN) * WIN;
  const first = fleet(40, 60, t0, 'car'); // 2,400 pings
  await xaddPings(redis, prefix, first);

  // Worker A commits its first batch, then is killed before it acknowledges anything.
  const a = startNode('dist/workers/main.js', { ...env, INSTANCE_ID: 'crash-a', GEOFLUX_FAULT_DELAY_AFTER_COMMIT_MS: '60000' });
  await a.waitForLog((l) => l.msg === 'flush committed (fault injection delay before ack)', 30000);
  a.proc.kill('SIGKILL');
  await new Promise((r) => a.proc.once('exit', r));

  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const committed = await ledgerKeys(client);
  assert.ok(committed > 0, 'worker A committed before it died');
  const keys = createKeys(prefix);
  assert.ok(await pendingEntries(redis, prefix, first) > 0, 'worker A left pending (unacknowledged) entries');

  // Worker B: a large backlog; killed at an arbitrary moment while flushing.
  const second = fleet(100, 150, t0 + 200_000, 'bus'); // 15,000 more
  await xaddPings(redis, prefix, second);
  const b = startNode('dist/workers/main.js', { ...env, INSTANCE_ID: 'crash-b', WORKER_READ_COUNT: '2000' });
  await b.waitForLog((l) => l.msg === 'worker running', 30000);
  await new Promise((r) => setTimeout(r, 400 + Math.floor(Math.random() * 800)));
  b.proc.kill('SIGKILL');
  await new Promise((r) => b.proc.once('exit', r));

  // Worker C finishes the job (claims what A and B left pending).
  const c = await startWorker({ ...env, INSTANCE_ID: 'crash-c' });
  const all = [...first, ...second];
  const want = uniquePings(all).length;
  await waitFor(async () => {
    const n = await ledgerKeys(client);
    return n === want ? n : undefined;
  }, 45000, `${want} pings persisted`);
  await waitNoPending(redis, prefix, all);
  const allStreams = streamsOf(prefix, all);

  assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions after crashes');
  assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], 'cell_stats after crashes');
  assert.equal(await c.stop(), 0);

  // The dead workers' consumers hold nothing now and leave the group.
  const removed = await createStreamReader(redis, keys, 'persist', 'crash-c', 10).pruneConsumers(allStreams, 0);
  assert.ok(removed >= 2, `consumers of dead workers removed (${removed})`);
  for (const s of allStreams) {
    const names = ((await redis.xinfo('CONSUMERS', s, 'persist')) as unknown[][]).map((c) => String(c[1]));
    assert.ok(names.every((n) => n === 'crash-c'), `${s}: ${names.join(',')}`);
  }
});
