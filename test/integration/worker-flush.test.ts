import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { freePort } from '../helpers/ports.js';
import { startWorker, type Child } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import {
  WIN, expectedPositions, expectedCells, uniquePings, persistedPings, xaddPings, readPositions, readCells, assertRowsMatch, waitFor, waitNoPending,
} from './worker-model.js';

/**
 * Flush scheduling and the lag gauge: a flush starts early when WORKER_MAX_BATCH entries are
 * held (lag stays bounded above maxBatch per interval); the lag gauge is the age of the oldest
 * unpersisted entry when scraped (not the value left by the last flush). Raw mode's ledger
 * (positions itself, ping_log only for keys that ever conflicted) under three concurrent
 * workers, duplicates, shared timestamps and a replay of persisted pings.
 */
let redis: Redis;
before(() => { redis = new Redis(testServices().redisUrl); });
after(async () => { await redis.quit(); });

function fleet(entities: number, perEntity: number, t0: number): AcceptedPing[] {
  const out: AcceptedPing[] = [];
  for (let e = 0; e < entities; e++) {
    for (let s = 1; s <= perEntity; s++) {
      const lat = 41.15 + e * 1e-3 + s * 1e-5, lon = -8.61 + e * 1e-3;
      out.push({ tenant: 'acme', id: `f-${e}`, ts: t0 + s * 1000 + e, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), speed: (s + e) % 20 });
    }
  }
  return out;
}

interface WorkerRun { client: pg.Client; prefix: string; workers: Child[] }

/**
 * A fresh database and key prefix, one worker per instance id (env: REDIS_URL, DATABASE_URL,
 * REDIS_KEY_PREFIX, then `extra`), a client on the database; afterwards every worker must stop
 * cleanly (exit 0) and the database is dropped.
 */
async function withWorkers(extra: Record<string, string>, instances: string[], run: (r: WorkerRun) => Promise<void>): Promise<void> {
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const env = { REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, ...extra };
  const workers: Child[] = [];
  for (const id of instances) workers.push(await startWorker({ ...env, INSTANCE_ID: id }));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await run({ client, prefix, workers });
  } finally {
    await client.end();
    for (const w of workers) assert.equal(await w.stop(), 0);
    await db.drop();
  }
}

test('entries that arrive while a write is in flight are all in the next write, even past WORKER_MAX_BATCH', async () => {
  // Before: reading stopped once maxBatch entries were held, so C (arriving after B filled the
  // buffer) missed the write that followed and waited for the 60 s interval.
  await withWorkers({ FLUSH_INTERVAL_MS: '60000', WORKER_MAX_BATCH: '200', GEOFLUX_FAULT_DELAY_AFTER_COMMIT_MS: '4000' }, ['held-w'], async ({ client, prefix, workers }) => {
    const worker = workers[0]!;
    await new Promise((r) => setTimeout(r, 300)); // the first (empty) flush at start is over
    const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN;
    const all = fleet(20, 30, t0); // 600 pings
    const [a, b, c] = [all.slice(0, 200), all.slice(200, 500), all.slice(500)];
    const sentAt = Date.now();
    await xaddPings(redis, prefix, a, { atomic: true }); // = maxBatch: a write starts at once (and stays in flight 4 s)
    await worker.waitForLog((l) => l.msg === 'flush committed (fault injection delay before ack)', 10000);
    await xaddPings(redis, prefix, b, { atomic: true }); // read during the write: 300 held, more than maxBatch
    await new Promise((r) => setTimeout(r, 1500)); // b has been read (poll every second)
    await xaddPings(redis, prefix, c, { atomic: true });
    await waitFor(async () => ((await persistedPings(client)) === all.length ? true : undefined), 20000, `${all.length} pings persisted long before the 60 s interval`);
    assert.ok(Date.now() - sentAt < 20000);
    const writes = (): number[] => worker.logs.filter((l) => l.msg === 'flushed' && Number(l.read) > 0).map((l) => Number(l.read));
    const flushed = await waitFor(async () => (writes().length >= 2 ? writes() : undefined), 10000, 'two writes logged (after the ack delay)');
    assert.deepEqual(flushed, [200, 400], 'the second write carries b and c (everything that arrived before it started)');
    assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions (held past maxBatch)');
  });
});

test('a flush starts early once WORKER_MAX_BATCH entries are held (interval 60 s)', async () => {
  await withWorkers({ FLUSH_INTERVAL_MS: '60000', WORKER_MAX_BATCH: '200' }, ['early-w'], async ({ client, prefix }) => {
    await new Promise((r) => setTimeout(r, 300)); // the first (empty) flush at start is over
    const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN;
    const all = fleet(20, 50, t0); // 1,000 pings, 5 × maxBatch
    const sentAt = Date.now();
    await xaddPings(redis, prefix, all, { atomic: true });
    await waitFor(async () => ((await persistedPings(client)) === all.length ? true : undefined), 15000, `${all.length} pings persisted long before the 60 s interval`);
    assert.ok(Date.now() - sentAt < 15000);
    assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions (early flush)');
  });
});

test('the lag gauge reads the age of the oldest unpersisted ping between flushes', async () => {
  const metricsPort = await freePort();
  const lagSeconds = async (): Promise<number> => {
    const m = /^geoflux_worker_persistence_lag_seconds (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    return Number(m?.[1] ?? NaN);
  };
  await withWorkers({ FLUSH_INTERVAL_MS: '9000', HOST: '127.0.0.1', WORKER_METRICS_PORT: String(metricsPort) }, ['lag-w'], async ({ client, prefix }) => {
    // The first flush runs at start; the next one only 9 s later.
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN;
    const all = fleet(5, 10, t0);
    const sentAt = Date.now();
    await xaddPings(redis, prefix, all);
    await new Promise((r) => setTimeout(r, 3500));
    const age = (Date.now() - sentAt) / 1000;
    const lag = await lagSeconds();
    assert.match(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), /^geoflux_worker_process_cpu_wait_seconds_total \d/m);
    assert.equal(await persistedPings(client), 0, 'not flushed yet');
    assert.ok(lag >= age - 1.2 && lag <= age + 0.2, `lag gauge ${lag} s while the oldest unpersisted ping is ${age.toFixed(2)} s old`);
    await new Promise((r) => setTimeout(r, 1500));
    const later = await lagSeconds();
    assert.ok(later >= lag + 0.4, `the gauge grows while nothing is persisted (${lag} → ${later})`);
    await waitFor(async () => ((await persistedPings(client)) === all.length ? true : undefined), 15000, 'persisted at the next flush');
    await waitFor(async () => ((await lagSeconds()) < 1.5 ? true : undefined), 3000, 'lag back to about 0 once persisted');
  });
});

test('raw mode ledger: three workers, duplicates, shared timestamps and a replay give exactly the model rows', async () => {
  await withWorkers({ FLUSH_INTERVAL_MS: '150', WORKER_READ_COUNT: '25', PERSIST_MODE: 'raw' }, ['raw-0', 'raw-1', 'raw-2'], async ({ client, prefix }) => {
    const t0 = Math.floor((Date.now() - 20 * 60_000) / WIN) * WIN;
    const all: AcceptedPing[] = [];
    for (let e = 0; e < 10; e++) {
      for (let s = 1; s <= 40; s++) {
        const lat = 41.15 + ((s + e) % 3) * 0.05, lon = -8.61 + (e % 2) * 0.05; // changes cell often
        const p: AcceptedPing = { tenant: e === 9 ? 'beta' : 'acme', id: `r-${e}`, ts: t0 + s * 900 + e * 7, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), speed: (s * 7 + e) % 30 };
        all.push(p);
        // same ts, another seq: shares the row (highest seq gives the fix)
        if (s % 9 === 0) all.push({ ...p, seq: s + 500, speed: 1.5, lat: p.lat + 1e-5 });
      }
    }
    // Every part goes in twice (as if through two gateways), interleaved with the next part.
    for (let i = 0; i < 5; i++) {
      const part = all.filter((_, j) => j % 5 === i);
      await xaddPings(redis, prefix, part);
      await xaddPings(redis, prefix, part.filter((_, j) => j % 2 === 0));
      await new Promise((r) => setTimeout(r, 100));
    }
    const want = uniquePings(all).length;
    await waitFor(async () => ((await persistedPings(client)) === want ? true : undefined), 40000, `${want} pings`);
    await waitNoPending(redis, prefix, all);
    // A replay of persisted pings (new stream entries): nothing may change.
    await xaddPings(redis, prefix, all.filter((_, j) => j % 3 === 0));
    await new Promise((r) => setTimeout(r, 1500)); // ten flush intervals: delivered and written again
    await waitNoPending(redis, prefix, all);
    assert.equal(await persistedPings(client), want);
    assertRowsMatch(await readPositions(client), expectedPositions(all, 'raw'), ['speed', 'mean_speed'], 'positions (raw, 3 workers, replay)');
    assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], 'cell_stats (raw, 3 workers, replay)');
  });
});
