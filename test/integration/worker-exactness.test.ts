import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { freePort } from '../helpers/ports.js';
import { startWorker, type Child } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import { createKeys, cellMember } from '../../src/store/redis/keys.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import {
  WIN, expectedPositions, expectedCells, uniquePings, persistedPings, xaddPings, readPositions, readCells, assertRowsMatch, waitFor, waitNoPending, streamsOf } from './worker-model.js';

/**
 * Exactly-once rows independent of batching: a known ping set (duplicates, out of order,
 * late pings for windows already written, cross-cell moves, same ts with two seqs, a poison
 * entry) is fed to the cell streams in three rounds with flushes in between, in many small
 * flushes (WORKER_READ_COUNT=10, WORKER_MAX_BATCH=30); positions and cell_stats must equal
 * the independent model. Also: dead letters, stream trimming, status key, /metrics.
 */
let redis: Redis;

before(() => { redis = new Redis(testServices().redisUrl); });
after(async () => { await redis.quit(); });

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32; };
}

export function scenario(seed: number): AcceptedPing[] {
  const r = rng(seed);
  const t0 = Math.floor((Date.now() - 15 * 60_000) / WIN) * WIN;
  const out: AcceptedPing[] = [];
  const ents = ['car-1', 'car-2', 'car-3', 'bike-4', 'mover-5'];
  for (const [ei, id] of ents.entries()) {
    const tenant = ei === 2 ? 'beta' : 'acme';
    let ts = t0 + Math.floor(r() * 3000);
    for (let seq = 1; seq <= 40; seq++) {
      ts += 500 + Math.floor(r() * 1500);
      // mover-5 hops between two ingest cells (about 8 km apart); the others drift slowly.
      const lat = id === 'mover-5' ? (seq % 3 === 0 ? 41.20 : 41.14) + r() * 1e-3 : 41.15 + ei * 0.01 + seq * 1e-4;
      const lon = id === 'mover-5' ? -8.61 + r() * 1e-3 : -8.61 + ei * 0.01 + seq * 1e-4;
      const p: AcceptedPing = { tenant, id, ts, seq, lat, lon, rx: ts + 50, cell: cellOf(lon, lat, 13), status: seq % 7 === 0 ? 'on_trip' : 'available' };
      if (r() > 0.2) p.speed = Math.round(r() * 300) / 10;
      if (r() > 0.5) p.heading = Math.round(r() * 360);
      out.push(p);
      // Same ts, other seq (a device that resent a fix with a new sequence number).
      if (seq % 13 === 0) out.push({ ...p, seq: seq + 1000, speed: 3.25, lat: p.lat + 1e-5 });
    }
  }
  // A ping without seq.
  out.push({ tenant: 'acme', id: 'noseq-6', ts: t0 + 12_345, lat: 41.16, lon: -8.62, rx: t0, cell: cellOf(-8.62, 41.16, 13), speed: 4 });
  return out;
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [a[i], a[j]] = [a[j]!, a[i]!]; }
  return a;
}

async function runMode(mode: 'window' | 'raw'): Promise<void> {
  const db = await createTestDatabase();
  const metricsPort = await freePort();
  const prefix = randomKeyPrefix();
  const keys = createKeys(prefix);
  const worker = await startWorker({
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '200',
    PERSIST_MODE: mode, WORKER_READ_COUNT: '10', WORKER_MAX_BATCH: '30', INSTANCE_ID: `w-${mode}`, HOST: '127.0.0.1', WORKER_METRICS_PORT: String(metricsPort),
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const all = scenario(42);
    const r = rng(7);
    // Duplicates (as if sent twice through two gateways), then shuffled and split in 3 rounds.
    const withDups = [...all, ...all.filter(() => r() < 0.25)];
    const order = shuffle(withDups, r);
    const rounds = [order.slice(0, 120), order.slice(120, 190), order.slice(190)];
    const sent: AcceptedPing[] = [];
    for (const [i, round] of rounds.entries()) {
      await xaddPings(redis, prefix, round);
      if (i === 1) {
        // Poison: not MessagePack, and a packed object that is not a ping; both in a live cell stream.
        const s = keys.cell('acme', all[0]!.cell).stream;
        await redis.xadd(s, '*', 'p', Buffer.from([0xc1, 0xff, 0x00]));
        await redis.xadd(s, '*', 'p', Buffer.from([0x81, 0xa1, 0x78, 0x01]));
        // Decodes fine but PostgreSQL refuses it (speed overflows real, SQLSTATE 22003): the
        // batch is split until this entry is isolated and dead-lettered; the others persist.
        await xaddPings(redis, prefix, [{ ...all[0]!, ts: all[0]!.ts + 1, seq: 9999, speed: 1e300 }]);
      }
      sent.push(...round);
      const want = uniquePings(sent).length;
      await waitFor(async () => {
        const n = await persistedPings(client);
        return n === want ? n : undefined;
      }, 30000, `round ${i}: ${want} pings persisted`);
    }
    // Everything acknowledged.
    await waitNoPending(redis, prefix, all, 10000);
    const streams = streamsOf(prefix, all);

    assertRowsMatch(await readPositions(client), expectedPositions(all, mode), ['speed', 'mean_speed'], `positions (${mode})`);
    assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], `cell_stats (${mode})`);
    if (mode === 'window') {
      // fewer rows than pings: one per entity and window
      assert.ok((await readPositions(client)).length < uniquePings(all).length / 2);
    }

    const dead = await redis.xrange(keys.deadLetters, '-', '+');
    assert.equal(dead.length, 3);
    const reasons: string[] = [];
    for (const [, fields] of dead) {
      const f = new Map<string, string>();
      for (let i = 0; i < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
      assert.ok(f.get('reason'), 'dead letter carries a reason');
      reasons.push(f.get('reason')!);
      assert.equal(f.get('stream'), keys.cell('acme', all[0]!.cell).stream);
    }
    assert.ok(reasons.some((r) => r.includes('22003')), `a database-rejected entry is dead-lettered: ${reasons.join(' | ')}`);
    // Acknowledged history is trimmed from the streams.
    await waitFor(async () => {
      let len = 0;
      for (const s of streams) len += await redis.xlen(s);
      return len <= streams.length ? true : undefined;
    }, 10000, 'streams trimmed');
    // Status for the gateway's side panel.
    const status = JSON.parse((await redis.get(keys.workerStatus(`w-${mode}`))) ?? 'null') as { lag_ms: number; pending: number; mode: string } | null;
    assert.ok(status, 'worker status published');
    assert.equal(status.mode, mode);
    assert.equal(typeof status.lag_ms, 'number');
    assert.ok(await redis.zscore(keys.activeCells, cellMember('acme', all[0]!.cell)));
    // Prometheus metrics of the worker (WORKER_METRICS_PORT).
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    assert.equal(value('geoflux_worker_pings_persisted_total'), uniquePings(all).length);
    assert.equal(value('geoflux_worker_dead_letters_total'), 3);
    assert.ok(value('geoflux_worker_rows_written_total{table="positions"}') >= expectedPositions(all, mode).length);
    assert.ok(value('geoflux_worker_flush_duration_seconds_count') > 3, `several flushes: ${metrics.split('\n').filter((l) => l.includes('flush_duration')).join('\n')}`);
    assert.ok(Number.isFinite(value('geoflux_worker_persistence_lag_seconds')));
    assert.ok(Number.isFinite(value('geoflux_worker_entries_pending')));
  } finally {
    await client.end();
    assert.equal(await worker.stop(), 0);
    await db.drop();
  }
}

test('window mode: one row per entity and 10 s window, exact counts, means and cell aggregates', () => runMode('window'));
test('raw mode: one row per ping (same ts collapses to the highest seq), exact aggregates', () => runMode('raw'));
