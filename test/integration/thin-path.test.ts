import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { io, type Socket } from 'socket.io-client';
import { roomsParser } from '../../src/protocol/rooms-parser.js';
import { unpack } from 'msgpackr';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, startWorker, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { cellOf } from '../../src/geo/tiles.js';
import { unpackEntity, type EntityUpdate, type PackedEntity } from '../../src/protocol/rooms.js';

/** The whole path, end to end: driver WS → Redis → socket.io subscriber, /v1/nearby, PostGIS row. */
let gateway: Child & { url: string };
let worker: Child;
let db: Awaited<ReturnType<typeof createTestDatabase>>;

before(async () => {
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  const env = { REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), FLUSH_INTERVAL_MS: '500' };
  gateway = await startGateway(env);
  worker = await startWorker(env);
});

after(async () => {
  await Promise.all([gateway?.stop(), worker?.stop()]);
  await db?.drop();
});

test('a ping reaches a tile subscriber, /v1/nearby and PostGIS', async () => {
  const lat = 41.1496, lon = -8.611, ts = Date.now();
  const tile = cellOf(lon, lat, 15);

  const viewer: Socket = io(gateway.url, { parser: roomsParser, transports: ['websocket'], auth: { token: await token('map-1', ['subscribe']) } });
  await new Promise<void>((resolve, reject) => { viewer.on('connect', resolve); viewer.on('connect_error', reject); });
  const sub = await viewer.emitWithAck('subscribe', { tiles: [tile] });
  assert.deepEqual(sub, { ok: true, tiles: [tile] });
  const received = new Promise<EntityUpdate[]>((resolve) => viewer.on('update', (t: string, payload: Buffer) => { if (t === tile) resolve((unpack(payload) as PackedEntity[]).map(unpackEntity)); }));

  const driver = new WebSocket(`${gateway.url.replace('http', 'ws')}/v1/ingest`, { headers: { authorization: `Bearer ${await token('car-7', ['ingest'])}` } });
  const frames: Record<string, unknown>[] = [];
  driver.on('message', (m) => frames.push(JSON.parse(m.toString()) as Record<string, unknown>));
  await new Promise((resolve, reject) => { driver.on('open', resolve); driver.on('error', reject); });
  driver.send(JSON.stringify({ id: 'car-7', lat, lon, ts, seq: 1, speed: 8.5, status: 'available' }));

  const updates = await received;
  assert.equal(updates.length, 1);
  assert.equal(updates[0]!.id, 'car-7');
  assert.ok(Math.abs(updates[0]!.lat - lat) < 1e-9);

  const ack = await waitFor(() => frames.find((f) => f.type === 'ack'));
  assert.deepEqual(ack, { type: 'ack', seq: 1, count: 1, frame: 1 });

  const res = await fetch(`${gateway.url}/v1/nearby?lat=${lat}&lon=${lon + 0.001}&radius=500`, { headers: { authorization: `Bearer ${await token('dispatch', ['query'])}` } });
  assert.equal(res.status, 200);
  const body = await res.json() as { results: { id: string; distance: number }[] };
  assert.equal(body.results[0]?.id, 'car-7');
  assert.ok(body.results[0]!.distance > 70 && body.results[0]!.distance < 100);

  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const row = await waitFor(async () => (await client.query(
      'SELECT entity_id, tenant, ST_X(geom) AS lon, ST_Y(geom) AS lat, extract(epoch from ts) * 1000 AS ts, status FROM positions',
    )).rows[0], 15000);
    assert.equal(row.entity_id, 'car-7');
    assert.equal(row.tenant, 'acme');
    assert.equal(row.status, 'available');
    assert.ok(Math.abs(row.lat - lat) < 1e-9 && Math.abs(row.lon - lon) < 1e-9);
    assert.equal(Math.round(Number(row.ts)), ts);
  } finally {
    await client.end();
    driver.close();
    viewer.close();
  }
});

test('health, readiness and clear errors', async () => {
  assert.deepEqual(await (await fetch(`${gateway.url}/healthz`)).json(), { status: 'ok' });
  const ready = await fetch(`${gateway.url}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal((await ready.json() as { status: string }).status, 'ready');
  const noToken = await fetch(`${gateway.url}/v1/nearby?lat=1&lon=1&radius=10`);
  assert.equal(noToken.status, 401);
  assert.equal((await noToken.json() as { error: { code: string } }).error.code, 'UNAUTHORIZED');
  const bad = await fetch(`${gateway.url}/v1/nearby?lat=100&lon=1&radius=10`, { headers: { authorization: `Bearer ${await token('d', ['query'])}` } });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json() as { error: { code: string } }).error.code, 'BAD_REQUEST');
  // Malformed percent-encoding in a path parameter: a 400 with a JSON body, and the gateway lives on.
  const q = { headers: { authorization: `Bearer ${await token('d', ['query'])}` } };
  for (const path of ['/v1/entities/%E0', '/v1/entities/%/track', '/v1/cells/%/0/0/stats', '/v1/entities/%E0']) {
    const r = await fetch(`${gateway.url}${path}`, q);
    assert.equal(r.status, 400, path);
    assert.equal((await r.json() as { error: { code: string } }).error.code, 'BAD_REQUEST', path);
  }
  // An empty value is a missing one, not 0.
  const empty = await fetch(`${gateway.url}/v1/nearby?lat=&lon=&radius=10`, q);
  assert.equal(empty.status, 400);
  assert.match((await empty.json() as { error: { message: string } }).error.message, /lat: .*; lon: /);
  const unauth = await fetch(`${gateway.url}/v1/entities/%E0`);
  assert.equal(unauth.status, 400);
  assert.deepEqual(await (await fetch(`${gateway.url}/healthz`)).json(), { status: 'ok' });
});

test('graceful shutdown: SIGTERM exits 0 for gateway and worker', async () => {
  assert.equal(await gateway.stop(), 0);
  assert.equal(await worker.stop(), 0);
  assert.ok(gateway.logs.some((l) => l.msg === 'stopped'));
  assert.ok(worker.logs.some((l) => l.msg === 'stopped'));
});
