import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token, TEST_JWT_SECRET } from '../helpers/tokens.js';
import { mintHmacToken } from '../../src/auth/tokens.js';
import { cellOf } from '../../src/geo/tiles.js';
import { MapClient, MapConnectError, type EntityUpdate } from '../../src/clients/map-client.js';
import { DriverClient } from '../../src/clients/driver-client.js';
import { until, sleep } from '../helpers/wait.js';
import { io } from 'socket.io-client';

/** Who may subscribe and follow; caps; viewport changes; reconnect gives a fresh snapshot. */
type Gw = Child & { url: string };
let A: Gw;
let B: Gw;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const open: { close(): unknown }[] = [];

before(async () => {
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  const env = {
    REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), ROOMS_COALESCE_MS: '25',
    ROOMS_REGISTRY_REFRESH_MS: '300', ROOMS_MAX_TILES_PER_CLIENT: '8',
  };
  [A, B] = await Promise.all([startGateway(env), startGateway(env)]);
});

after(async () => {
  for (const c of open) await c.close();
  await Promise.all([A?.stop(), B?.stop()]);
  await db?.drop();
});

function followToken(sub: string, follow: string[]): Promise<string> {
  return mintHmacToken(TEST_JWT_SECRET, { sub, tenant: 'acme', scopes: ['subscribe'], follow, ttlSeconds: 600, issuer: 'geoflux' });
}

async function connect(gw: Gw, tok: string): Promise<MapClient> {
  const m = await MapClient.connect(gw.url, tok);
  open.push(m);
  return m;
}

async function driver(gw: Gw, id: string, tenant = 'acme'): Promise<DriverClient> {
  const d = await DriverClient.connect(gw.url, await token(id, ['ingest'], tenant));
  open.push({ close: () => d.close() });
  return d;
}


test('a client speaking socket.io\'s default packet format is closed, and the gateway keeps serving', async () => {
  // The rooms use socket.io-msgpack-parser; a default-parser client's text packets do not decode.
  const old = io(A.url, { path: '/socket.io', transports: ['websocket'], auth: { token: await token('old-map', ['subscribe']) }, reconnection: false });
  try {
    const outcome = await new Promise<string>((resolve) => {
      old.on('connect', () => resolve('connected'));
      old.on('connect_error', () => resolve('refused'));
      old.on('disconnect', () => resolve('refused'));
      setTimeout(() => resolve('timeout'), 5000).unref();
    });
    assert.equal(outcome, 'refused');
  } finally {
    old.close();
  }
  const m = await connect(A, await token('new-map', ['subscribe']));
  const tile = cellOf(-8.611, 41.149, 14);
  assert.deepEqual(await m.subscribeTiles([tile]), { ok: true, tiles: [tile] });
});

test('a token without the subscribe scope, or no token, is refused at the handshake', async () => {
  await assert.rejects(MapClient.connect(A.url, await token('drv', ['ingest']), { reconnect: false }),
    (e: unknown) => e instanceof MapConnectError && e.code === 'FORBIDDEN');
  await assert.rejects(MapClient.connect(A.url, 'not-a-token', { reconnect: false }),
    (e: unknown) => e instanceof MapConnectError && e.code === 'UNAUTHORIZED');
});

test('another tenant subscribing to the same tile sees nothing of this tenant', async () => {
  const lat = 41.15, lon = -8.62;
  const tile = cellOf(lon, lat, 15);
  const d = await driver(A, 'car-t1');
  await d.send({ id: 'car-t1', lat, lon, ts: Date.now(), seq: 1 });
  const other = await connect(B, await token('map-o', ['subscribe'], 'globex'));
  const mine = await connect(B, await token('map-m', ['subscribe']));
  const otherSnaps: EntityUpdate[][] = [];
  const otherUpdates: EntityUpdate[][] = [];
  other.on('snapshot', (_t, e) => otherSnaps.push(e));
  other.on('update', (_t, u) => otherUpdates.push(u));
  await other.subscribeTiles([tile]);
  await mine.subscribeTiles([tile]);
  assert.deepEqual(otherSnaps, [[]]);
  assert.ok(mine.tileState(tile).has('car-t1'), 'same tenant gets it in the snapshot');
  await d.send({ id: 'car-t1', lat, lon: lon + 0.0001, ts: Date.now() + 1, seq: 2 });
  await until(() => mine.tileState(tile).get('car-t1')?.lon === lon + 0.0001, 5000, 'delta for the same tenant');
  await sleep(200);
  assert.deepEqual(otherUpdates, []);
});

test('following an entity needs the follow claim (or admin); followers on any gateway get its moves', async () => {
  const rider = await connect(B, await followToken('rider-1', ['drv-7']));
  const nosy = await connect(B, await followToken('rider-2', ['drv-8']));
  const admin = await connect(A, await token('ops', ['subscribe', 'admin']));
  assert.equal((await nosy.followEntity('drv-7')).ok, false);
  assert.deepEqual(await nosy.followEntity('drv-7'), { ok: false, code: 'FORBIDDEN', message: 'token may not follow drv-7' });
  assert.deepEqual(await rider.followEntity('drv-7'), { ok: true, id: 'drv-7' });
  assert.deepEqual(await admin.followEntity('drv-7'), { ok: true, id: 'drv-7' });
  const nosyGot: unknown[] = [];
  nosy.on('entity', (id) => nosyGot.push(id));
  await sleep(400);
  const d = await driver(A, 'drv-7');
  const ts = Date.now();
  await d.send({ id: 'drv-7', lat: 41.17, lon: -8.6, ts, seq: 1, status: 'on_trip' });
  await until(() => rider.followed('drv-7')?.ts === ts, 5000, 'rider sees the driver');
  await until(() => admin.followed('drv-7')?.ts === ts, 5000, 'admin sees the driver');
  assert.equal(rider.followed('drv-7')?.status, 'on_trip');
  // A new follower gets the current position at once.
  const late = await connect(A, await followToken('rider-3', ['drv-7']));
  await late.followEntity('drv-7');
  assert.equal(late.followed('drv-7')?.ts, ts);
  assert.deepEqual(nosyGot, []);
});

test('per-client tile cap, bad tiles and viewports get clear error codes; a viewport change drops old tiles', async () => {
  const m = await connect(A, await token('map-cap', ['subscribe']));
  const many = Array.from({ length: 9 }, (_, i) => `15/${15600 + i}/12257`);
  assert.deepEqual(await m.subscribeTiles(many), { ok: false, code: 'TOO_MANY_TILES', message: 'at most 8 tiles per client' });
  const bad = await m.subscribeTiles(['99/1/1']);
  assert.equal(bad.ok, false);
  assert.equal(!bad.ok && bad.code, 'BAD_REQUEST');
  const huge = await m.subscribeViewport([-9, 40, -8, 42], 15);
  assert.equal(!huge.ok && huge.code, 'TOO_MANY_TILES');
  const v1 = await m.subscribeViewport([-8.62, 41.14, -8.60, 41.15], 15);
  assert.ok(v1.ok && v1.tiles.length >= 1 && v1.tiles.length <= 8);
  const v2 = await m.subscribeViewport([-8.52, 41.14, -8.51, 41.145], 15);
  assert.ok(v2.ok);
  assert.deepEqual(m.subscribedTiles().sort(), (v2.ok ? v2.tiles : []).sort());
  // The old viewport's tiles no longer receive updates.
  const oldTile = v1.ok ? v1.tiles[0]! : '';
  const got: string[] = [];
  m.on('update', (t) => got.push(t));
  const d = await driver(B, 'car-vp');
  const [lon, lat] = [-8.615, 41.145];
  assert.ok(v1.ok && v1.tiles.includes(cellOf(lon, lat, 15)));
  await d.send({ id: 'car-vp', lat, lon, ts: Date.now(), seq: 1 });
  await sleep(400);
  assert.ok(!got.includes(oldTile));
});

test('after a dropped connection the client re-subscribes and converges through a fresh snapshot', async () => {
  const lat = 41.155, lon = -8.63;
  const tile = cellOf(lon, lat, 16);
  const m = await connect(B, await token('map-rc', ['subscribe']));
  await m.subscribeTiles([tile]);
  const d = await driver(A, 'car-rc');
  await d.send({ id: 'car-rc', lat, lon, ts: Date.now(), seq: 1 });
  await until(() => m.tileState(tile).has('car-rc'), 5000, 'first update');
  const reconnected = new Promise<void>((resolve) => m.on('reconnected', () => resolve()));
  const snapshots: EntityUpdate[][] = [];
  m.on('snapshot', (t, e) => { if (t === tile) snapshots.push(e); });
  m.simulateDrop();
  // While it is away, the driver moves.
  const ts2 = Date.now() + 1;
  await d.send({ id: 'car-rc', lat: lat + 0.0002, lon, ts: ts2, seq: 2 });
  await reconnected;
  await until(() => snapshots.length > 0, 5000, 'fresh snapshot');
  assert.equal(snapshots[0]!.find((e) => e.id === 'car-rc')?.ts, ts2);
  assert.equal(m.tileState(tile).get('car-rc')?.ts, ts2);
});

test('a socket is disconnected when its token expires; a client with a token provider comes back', async () => {
  const lat = 41.152, lon = -8.625;
  const tile = cellOf(lon, lat, 15);
  let issued = 0;
  const m = await MapClient.connect(A.url, async () => { issued++; return token('map-exp', ['subscribe'], 'acme', 2); });
  open.push(m);
  await m.subscribeTiles([tile]);
  const reasons: string[] = [];
  m.on('disconnect', (r) => reasons.push(r));
  const back = new Promise<void>((resolve) => m.on('reconnected', () => resolve()));
  await back;
  assert.deepEqual(reasons, ['io server disconnect']);
  assert.equal(issued, 2);
  assert.deepEqual(m.subscribedTiles(), [tile]);
});
