import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startWorker } from '../helpers/processes.js';
import { cellOf } from '../../src/geo/tiles.js';
import { createKeys } from '../../src/store/redis/keys.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { WIN, expectedPositions, expectedCells, uniquePings, xaddPings, readPositions, readCells, assertRowsMatch, waitFor, waitNoPending, ledgerKeys } from './worker-model.js';

/**
 * PostgreSQL outage: the worker reaches PostgreSQL through a TCP proxy that the test kills
 * (every connection reset, port refused) and restarts; pings keep arriving meanwhile. The
 * worker retries with backoff, the streams buffer, then it catches up: every ping once.
 */
interface Proxy { port: number; close(): Promise<void> }

function startProxy(target: URL, port = 0): Promise<Proxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port), target.hostname);
    sockets.add(down); sockets.add(up);
    const end = (): void => { down.destroy(); up.destroy(); sockets.delete(down); sockets.delete(up); };
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
    down.pipe(up); up.pipe(down);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({
      port: (server.address() as net.AddressInfo).port,
      close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
    }));
  });
}

let redis: Redis;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let proxy: Proxy | undefined;

before(async () => {
  redis = new Redis(testServices().redisUrl);
  db = await createTestDatabase();
});
after(async () => {
  await proxy?.close();
  await redis.quit();
  await db.drop();
});

function pings(ids: string[], n: number, t0: number): AcceptedPing[] {
  const out: AcceptedPing[] = [];
  ids.forEach((id, e) => {
    for (let s = 1; s <= n; s++) {
      const lat = 41.15 + e * 0.03 + s * 1e-5, lon = -8.61 + s * 1e-5;
      out.push({ tenant: 'acme', id, ts: t0 + s * 1500 + e, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), speed: s % 17 });
    }
  });
  return out;
}

test('PostgreSQL unavailable: retries with backoff, buffers in the streams, catches up, every ping once', async () => {
  const target = new URL(db.url);
  proxy = await startProxy(target);
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  const prefix = randomKeyPrefix();
  const worker = await startWorker({
    REDIS_URL: testServices().redisUrl, DATABASE_URL: viaProxy.toString(), REDIS_KEY_PREFIX: prefix, FLUSH_INTERVAL_MS: '200',
    WORKER_CLAIM_IDLE_MS: '1000', INSTANCE_ID: 'outage-w',
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const count = (): Promise<number> => ledgerKeys(client);
  try {
    const t0 = Math.floor((Date.now() - 20 * 60_000) / WIN) * WIN;
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const all = pings(ids, 90, t0); // 540 pings, 135 s each
    const parts = [all.filter((_, i) => i % 3 === 0), all.filter((_, i) => i % 3 === 1), all.filter((_, i) => i % 3 === 2)];

    await xaddPings(redis, prefix, parts[0]!);
    await waitFor(async () => ((await count()) === parts[0]!.length ? true : undefined), 20000, 'first part persisted');

    // Outage: the proxy dies (connections reset, new ones refused) while pings keep coming.
    await proxy.close();
    proxy = undefined;
    for (let i = 0; i < 4; i++) {
      await xaddPings(redis, prefix, parts[1]!.slice(i * 45, (i + 1) * 45));
      await new Promise((r) => setTimeout(r, 500));
    }
    await worker.waitForLog((l) => l.msg === 'flush failed; batch kept and retried', 10000);
    assert.equal(await count(), parts[0]!.length, 'nothing written while PostgreSQL is unreachable');
    const keys = createKeys(prefix);
    const status = JSON.parse((await redis.get(keys.workerStatus('outage-w'))) ?? '{}') as { lag_ms?: number };
    assert.ok((status.lag_ms ?? 0) > 0, 'persistence lag grows during the outage');

    // Back up on the same port; more pings; a duplicate replay of part 1 for good measure.
    proxy = await startProxy(target, Number(viaProxy.port));
    await xaddPings(redis, prefix, [...parts[2]!, ...parts[1]!.slice(0, 30)]);
    const want = uniquePings(all).length;
    await waitFor(async () => ((await count()) === want ? true : undefined), 40000, `${want} pings after recovery`);
    await waitNoPending(redis, prefix, all);

    assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], 'positions after outage');
    assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], 'cell_stats after outage');
  } finally {
    await client.end();
    assert.equal(await worker.stop(), 0);
  }
});
