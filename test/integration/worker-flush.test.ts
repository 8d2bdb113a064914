import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startWorker } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import { createKeys, cellMember } from '../../src/store/redis/keys.js';
import { encodeAccepted, STREAM_FIELD } from '../../src/store/redis/codec.js';
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

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

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

/** All entries in one MULTI: a reader sees none or all of them. */
async function xaddAtomic(prefix: string, pings: readonly AcceptedPing[]): Promise<void> {
  const keys = createKeys(prefix);
  const m = redis.multi();
  for (const p of pings) {
    m.xadd(keys.cell(p.tenant, p.cell).stream, '*', STREAM_FIELD, encodeAccepted(p));
    m.zadd(keys.activeCells, Date.now(), cellMember(p.tenant, p.cell));
  }
  await m.exec();
}

test('entries that arrive while a write is in flight are all in the next write, even past WORKER_MAX_BATCH', async () => {
  // Before: reading stopped once maxBatch entries were held, so C (arriving after B filled the
  // buffer) missed the write that followed and waited for the 60 s interval.
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const worker = await startWorker({
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '60000',
    WORKER_MAX_BATCH: '200', INSTANCE_ID: 'held-w', GEOFLUX_FAULT_DELAY_AFTER_COMMIT_MS: '4000',
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await new Promise((r) => setTimeout(r, 300)); // the first (empty) flush at start is over
    const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN;
    const all = fleet(20, 30, t0); // 600 pings
    const [a, b, c] = [all.slice(0, 200), all.slice(200, 500), all.slice(500)];
    const sentAt = Date.now();
    await xaddAtomic(prefix, a); // = maxBatch: a write starts at once (and stays in flight 4 s)
    await worker.waitForLog((l) => l.msg === 'flush committed (fault injection delay before ack)', 10000);
    await xaddAtomic(prefix, b); // read during the write: 300 held, more than maxBatch
    await new Promise((r) => setTimeout(r, 1500)); // b has been read (poll every second)
    await xaddAtomic(prefix, c);
    await waitFor(async () => ((await persistedPings(client)) === all.length ? true : undefined), 20000, `${all.length} pings persisted long before the 60 s interval`);
    assert.ok(Date.now() - sentAt < 20000);
    const writes = (): number[] => worker.logs.filter((l) => l.msg === 'flushed' && Number(l.read) > 0).map((l) => Number(l.read));
    const flushed = await waitFor(async () => (writes().length >= 2 ? writes() : undefined), 10000, 'two writes logged (after the ack delay)');
    assert.deepEqual(flushed, [200, 400], 'the second write carries b and c (everything that arrived before it started)');
    assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions (held past maxBatch)');
  } finally {
    await client.end();
    assert.equal(await worker.stop(), 0);
    await db.drop();
  }
});

test('a flush starts early once WORKER_MAX_BATCH entries are held (interval 60 s)', async () => {
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const worker = await startWorker({
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '60000',
    WORKER_MAX_BATCH: '200', INSTANCE_ID: 'early-w',
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await new Promise((r) => setTimeout(r, 300)); // the first (empty) flush at start is over
    const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN;
    const all = fleet(20, 50, t0); // 1,000 pings, 5 × maxBatch
    const sentAt = Date.now();
    await xaddAtomic(prefix, all);
    await waitFor(async () => ((await persistedPings(client)) === all.length ? true : undefined), 15000, `${all.length} pings persisted long before the 60 s interval`);
    assert.ok(Date.now() - sentAt < 15000);
    assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions (early flush)');
  } finally {
    await client.end();
    assert.equal(await worker.stop(), 0);
    await db.drop();
  }
});

test('the lag gauge reads the age of the oldest unpersisted ping between flushes', async () => {
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const metricsPort = await freePort();
  const worker = await startWorker({
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '9000',
    INSTANCE_ID: 'lag-w', HOST: '127.0.0.1', WORKER_METRICS_PORT: String(metricsPort),
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const lagSeconds = async (): Promise<number> => {
    const m = /^geoflux_worker_persistence_lag_seconds (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    return Number(m?.[1] ?? NaN);
  };
  try {
    // The first flush runs at start; the next one only 9 s later.
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN;
    const all = fleet(5, 10, t0);
    const sentAt = Date.now();
    await xaddPings(redis, prefix, all);
    await new Promise((r) => setTimeout(r, 3500));
    const age = (Date.now() - sentAt) / 1000;
    const lag = await lagSeconds();
    assert.equal(await persistedPings(client), 0, 'not flushed yet');
    assert.ok(lag >= age - 1.2 && lag <= age + 0.2, `lag gauge ${lag} s while the oldest unpersisted ping is ${age.toFixed(2)} s old`);
    await new Promise((r) => setTimeout(r, 1500));
    const later = await lagSeconds();
    assert.ok(later >= lag + 0.4, `the gauge grows while nothing is persisted (${lag} → ${later})`);
    await waitFor(async () => ((await persistedPings(client)) === all.length ? true : undefined), 15000, 'persisted at the next flush');
    await waitFor(async () => ((await lagSeconds()) < 1.5 ? true : undefined), 3000, 'lag back to about 0 once persisted');
  } finally {
    await client.end();
    assert.equal(await worker.stop(), 0);
    await db.drop();
  }
});

test('raw mode ledger: three workers, duplicates, shared timestamps and a replay give exactly the model rows', async () => {
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const env = {
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '150', WORKER_READ_COUNT: '25', PERSIST_MODE: 'raw',
  };
  const workers = [];
  for (let i = 0; i < 3; i++) workers.push(await startWorker({ ...env, INSTANCE_ID: `raw-${i}` }));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
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
  } finally {
    await client.end();
    for (const w of workers) assert.equal(await w.stop(), 0);
    await db.drop();
  }
});
