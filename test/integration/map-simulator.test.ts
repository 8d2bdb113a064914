import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token, TEST_JWT_SECRET } from '../helpers/tokens.js';
import { createLogger } from '../../src/log/logger.js';
import { mintHmacToken } from '../../src/auth/tokens.js';
import { createFleet } from '../../src/sim/fleet.js';
import { buildFleetEntities } from '../../src/sim/setup.js';
import { defaultDataDir } from '../../src/sim/data-dir.js';

/** The fleet runner against a real gateway: every vehicle its own token and socket, drops and comes back, statuses change. */
let gateway: Child & { url: string };
let db: Awaited<ReturnType<typeof createTestDatabase>>;

before(async () => {
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  gateway = await startGateway({ REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix() });
});

after(async () => {
  await gateway?.stop();
  await db?.drop();
});

test('a simulated fleet pings through the driver protocol, goes offline and comes back', async () => {
  const log = createLogger({ log: { level: 'warn', pretty: false }, env: 'test', instanceId: 'sim-test' }, 'simulator');
  const setup = buildFleetEntities({
    city: 'porto', vehicles: 30, dataDir: defaultDataDir(), seed: 3, intervalMs: [1000, 1500],
    meanOnlineSeconds: 4, offlineSeconds: [1, 2], speedup: 1,
  });
  const minted: string[] = [];
  const fleet = createFleet({
    log, url: gateway.url.replace('http', 'ws'), encoding: 'msgpack', entities: setup.entities, tickMs: 100,
    tokenFor: (id) => { minted.push(id); return mintHmacToken(TEST_JWT_SECRET, { sub: id, tenant: 'simtest', scopes: ['ingest'], ttlSeconds: 600, issuer: 'geoflux' }); },
  });
  await fleet.start();
  await new Promise((r) => setTimeout(r, 8000));
  const mid = fleet.stats();
  await fleet.stop();
  const end = fleet.stats();

  assert.equal(new Set(minted).size, 30, 'one token per vehicle');
  assert.equal(end.rejected, 0);
  assert.equal(end.connectFailures, 0);
  assert.equal(end.drops, 0, 'the server never closed a vehicle');
  assert.ok(end.acked >= 100 && end.acked === end.sent, JSON.stringify(end));
  assert.ok(mid.offlineCloses >= 5, `offline spells: ${mid.offlineCloses}`);
  assert.ok(mid.connects > 30, `reconnections: ${mid.connects - 30}`);
  assert.equal(end.connected, 0, 'all sockets closed on stop');

  // What the server holds: the tenant's vehicles in Porto, with both statuses and several kinds.
  const r = await fetch(`${gateway.url}/v1/nearby?lat=41.163&lon=-8.622&radius=10000&limit=100`, { headers: { authorization: `Bearer ${await token('viewer', ['query'], 'simtest')}` } });
  const body = await r.json() as { results: { id: string; status?: string; kind?: string; lat: number; lon: number }[] };
  assert.ok(body.results.length >= 25, `live: ${body.results.length}`);
  assert.deepEqual([...new Set(body.results.map((e) => e.status))].sort(), ['available', 'on_trip']);
  assert.ok(new Set(body.results.map((e) => e.kind)).size >= 2);
});
