import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';
import { cellOf, parseTile, tileKey, tileOf } from '../../src/geo/tiles.js';
import { createKeys } from '../../src/store/redis/keys.js';
import { MapClient, type EntityUpdate, type LeftEntity, type TileAggregate } from '../../src/clients/map-client.js';
import { DriverClient } from '../../src/clients/driver-client.js';
import { until, sleep } from '../helpers/wait.js';

/**
 * Live tile rooms across two gateway processes sharing one Redis: cross-gateway delivery,
 * isolation, leave events (cell change, TTL), snapshot + delta convergence, aggregates.
 */
type Gw = Child & { url: string };
let A: Gw;
let B: Gw;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let redis: Redis;
const prefix = randomKeyPrefix();
const keys = createKeys(prefix);
const TTL_S = 5; // the smallest TTL the config accepts
const INGEST_ZOOM = 13;
const open: { close(): unknown }[] = [];

before(async () => {
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  const env = {
    REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, ENTITY_TTL_SECONDS: String(TTL_S),
    SWEEP_INTERVAL_MS: '250', GRID_ZOOM: String(INGEST_ZOOM), ROOMS_COALESCE_MS: '25', ROOMS_REGISTRY_REFRESH_MS: '300',
    ROOMS_AGGREGATE_INTERVAL_MS: '300', ROOMS_AGGREGATE_BELOW_ZOOM: '12',
  };
  [A, B] = await Promise.all([startGateway(env), startGateway(env)]);
  redis = new Redis(redisUrl);
});

after(async () => {
  for (const c of open) await c.close();
  await Promise.all([A?.stop(), B?.stop()]);
  redis?.disconnect();
  await db?.drop();
});

async function map(gw: Gw, sub = 'map', scopes: ('subscribe' | 'admin' | 'query')[] = ['subscribe'], tenant = 'acme'): Promise<MapClient> {
  const m = await MapClient.connect(gw.url, await token(sub, scopes, tenant));
  open.push(m);
  return m;
}

async function driver(gw: Gw, id: string, tenant = 'acme'): Promise<DriverClient> {
  const d = await DriverClient.connect(gw.url, await token(id, ['ingest'], tenant));
  open.push({ close: () => d.close() });
  return d;
}

/** Collects events of one kind for one tile. */
function collect<T>(m: MapClient, ev: 'update' | 'left', tile: string): T[] {
  const out: T[] = [];
  m.on(ev, (t: string, list: unknown) => { if (t === tile) out.push(...(list as T[])); });
  return out;
}



/** Live entities of a tile straight from Redis (seen within TTL, position from the GEO set). */
async function redisTileState(tenant: string, tile: string): Promise<Map<string, { lat: number; lon: number }>> {
  const t = parseTile(tile)!;
  const cells = t.z >= INGEST_ZOOM ? [cellOf(...centerOf(tile), INGEST_ZOOM)] : [];
  const out = new Map<string, { lat: number; lon: number }>();
  for (const cell of cells) {
    const ck = keys.cell(tenant, cell);
    const ids = await redis.zrangebyscore(ck.seen, Date.now() - TTL_S * 1000, '+inf');
    if (ids.length === 0) continue;
    const pos = await redis.geopos(ck.geo, ...ids);
    ids.forEach((id, i) => {
      const p = pos[i];
      if (!p) return;
      const lon = Number(p[0]), lat = Number(p[1]);
      if (tileKey(tileOf(lon, lat, t.z)) === tile) out.set(id, { lat, lon });
    });
  }
  return out;
}

function centerOf(tile: string): [number, number] {
  const t = parseTile(tile)!;
  const n = 2 ** t.z;
  const lon = ((t.x + 0.5) / n) * 360 - 180;
  const lat = (Math.atan(Math.sinh(Math.PI * (1 - (2 * (t.y + 0.5)) / n))) * 180) / Math.PI;
  return [lon, lat];
}

test('a ping on gateway A reaches subscribers on A and B; a subscriber elsewhere sees nothing; moving out sends left', async () => {
  const lat = 41.1496, lon = -8.611;
  const tile = cellOf(lon, lat, 15);
  const far = cellOf(2.35, 48.85, 15); // Paris
  const [mA, mB, mOut] = await Promise.all([map(A, 'map-a'), map(B, 'map-b'), map(B, 'map-out')]);
  assert.deepEqual(await mA.subscribeTiles([tile]), { ok: true, tiles: [tile] });
  await mB.subscribeTiles([tile]);
  await mOut.subscribeTiles([far]);
  const upA = collect<EntityUpdate>(mA, 'update', tile);
  const upB = collect<EntityUpdate>(mB, 'update', tile);
  const leftB = collect<LeftEntity>(mB, 'left', tile);
  const outside: unknown[] = [];
  mOut.on('update', (t, l) => outside.push(t, l));
  mOut.on('left', (t, l) => outside.push(t, l));
  await sleep(400); // registry refresh on A (the announce is immediate, this only adds margin)

  const d = await driver(A, 'car-x1');
  const ts = Date.now() - 120_000; // room for a plausible 5 km move (ingest refuses impossible speeds)
  const ack = await d.send({ id: 'car-x1', lat, lon, ts, seq: 1, status: 'available' });
  assert.equal(ack.count, 1);
  await until(() => upA.some((u) => u.id === 'car-x1') && upB.some((u) => u.id === 'car-x1'), 5000, 'update on A and B');
  const got = upB.find((u) => u.id === 'car-x1')!;
  assert.equal(got.ts, ts);
  assert.equal(got.status, 'available');
  assert.ok(Math.abs(got.lat - lat) < 1e-9 && Math.abs(got.lon - lon) < 1e-9);
  assert.equal(mB.tileState(tile).get('car-x1')?.ts, ts);
  // The accepting gateway measured the server-side part: ping received → frame broadcast.
  const metrics = await (await fetch(`${A.url}/metrics`)).text();
  const sent = Number(/^geoflux_room_ping_to_frame_seconds_count (\d+)/m.exec(metrics)?.[1] ?? 0);
  assert.ok(sent >= 1, `ping → frame observed on A (${sent})`);

  // Move ~5 km east: another ingest cell, so the z15 tile is left.
  const lon2 = lon + 0.06;
  assert.notEqual(cellOf(lon2, lat, INGEST_ZOOM), cellOf(lon, lat, INGEST_ZOOM));
  await d.send({ id: 'car-x1', lat, lon: lon2, ts: ts + 120_000, seq: 2 });
  const left = await until(() => leftB.find((l) => l.id === 'car-x1'), 5000, 'left on B');
  assert.equal(left.reason, 'moved');
  await until(() => !mA.tileState(tile).has('car-x1') && !mB.tileState(tile).has('car-x1'), 2000, 'state cleared');
  await sleep(300);
  assert.deepEqual(outside, [], 'a subscriber of another tile receives nothing');
});

test('an entity silent longer than its TTL leaves its tiles (left reason expired)', async () => {
  const lat = 41.16, lon = -8.64;
  const tile = cellOf(lon, lat, 16);
  const m = await map(B, 'map-ttl');
  await m.subscribeTiles([tile]);
  const left = collect<LeftEntity>(m, 'left', tile);
  const d = await driver(A, 'car-ttl');
  await d.send({ id: 'car-ttl', lat, lon, ts: Date.now(), seq: 1 });
  await until(() => m.tileState(tile).has('car-ttl'), 5000, 'update');
  const l = await until(() => left.find((x) => x.id === 'car-ttl'), TTL_S * 1000 + 6000, 'expired left');
  assert.equal(l.reason, 'expired');
  assert.equal(m.tileState(tile).has('car-ttl'), false);
  // A fresh snapshot agrees: the entity is gone.
  const m2 = await map(A, 'map-ttl-2');
  const snap = new Promise<EntityUpdate[]>((resolve) => m2.on('snapshot', (t, e) => { if (t === tile) resolve(e); }));
  await m2.subscribeTiles([tile]);
  assert.deepEqual((await snap).map((e) => e.id), []);
});

test('snapshot + deltas converge to the live state in Redis (and /v1/within when present)', async () => {
  const base = { lat: 41.1405, lon: -8.6105 };
  const tile = cellOf(base.lon, base.lat, 14);
  const ids = ['cv-1', 'cv-2', 'cv-3', 'cv-4', 'cv-5'];
  const drivers = await Promise.all(ids.map((id, i) => driver(i % 2 ? A : B, id)));
  const t0 = Date.now() - 180_000; // steps 60 s apart: the 4 km move of step 3 stays plausible
  // Before anyone subscribes: these must come through the snapshot.
  await Promise.all(drivers.map((d, i) => d.send({ id: ids[i], lat: base.lat + i * 0.001, lon: base.lon + i * 0.001, ts: t0, seq: 1 })));
  const m = await map(A, 'map-cv');
  const snap = new Promise<EntityUpdate[]>((resolve) => m.on('snapshot', (t, e) => { if (t === tile) resolve(e); }));
  await m.subscribeTiles([tile]);
  assert.deepEqual((await snap).map((e) => e.id).sort(), ids);
  // Then deltas: everyone moves a few times, one leaves the tile.
  for (let step = 1; step <= 3; step++) {
    await Promise.all(drivers.map((d, i) => {
      const away = i === 4 && step === 3;
      return d.send({ id: ids[i], lat: base.lat + i * 0.001 + step * 0.0003, lon: away ? base.lon + 0.05 : base.lon + i * 0.001, ts: t0 + step * 60_000, seq: step + 1 });
    }));
    await sleep(60);
  }
  const truth = await redisTileState('acme', tile);
  assert.deepEqual([...truth.keys()].sort(), ids.slice(0, 4));
  await until(() => {
    const s = m.tileState(tile);
    return s.size === truth.size && [...truth].every(([id, p]) => {
      const u = s.get(id);
      return u && Math.abs(u.lat - p.lat) < 1e-5 && Math.abs(u.lon - p.lon) < 1e-5;
    });
  }, 5000, 'client state = Redis state');
  const res = await fetch(`${A.url}/v1/within?tile=${tile}`, { headers: { authorization: `Bearer ${await token('q', ['query'])}` } });
  if (res.status !== 404) {
    assert.equal(res.status, 200);
    const body = await res.json() as { results?: { id: string; lat: number; lon: number }[] };
    const within = body.results ?? [];
    assert.deepEqual(within.map((r) => r.id).sort(), [...m.tileState(tile).keys()].sort());
  }
});

test('below the aggregate zoom a tile gets counts per sub-tile that match the live entities', async () => {
  const tile = cellOf(-9.14, 38.72, 9); // around Lisbon, own tenant: nothing else counts here
  const wide = cellOf(-9.14, 38.72, 5); // 4^8 cells: found through the active-cell set
  const [lon, lat] = centerOf(tile);
  const ids = ['ag-1', 'ag-2', 'ag-3'];
  const drivers = await Promise.all(ids.map((id) => driver(A, id, 'lisbon')));
  const now = Date.now();
  await Promise.all(drivers.map((d, i) => d.send({ id: ids[i], lat: lat + i * 0.05, lon: lon + i * 0.05, ts: now, seq: 1 })));
  const m = await map(B, 'map-agg', ['subscribe'], 'lisbon');
  const aggs = new Map<string, TileAggregate[]>([[tile, []], [wide, []]]);
  m.on('aggregates', (t, a) => aggs.get(t)?.push(a));
  const vehicles: unknown[] = [];
  m.on('update', (t, u) => vehicles.push(t, u));
  const ack = await m.subscribeTiles([tile, wide]);
  assert.deepEqual(ack, { ok: true, tiles: [tile, wide], aggregated: [tile, wide] });
  const first = await until(() => aggs.get(tile)![0], 3000, 'aggregates');
  assert.equal(first.total, 3);
  assert.equal(first.z, 12);
  assert.equal(first.cells.reduce((s, c) => s + c[2], 0), 3);
  for (const [x, y] of first.cells) assert.equal(tileKey({ z: 9, x: x >> 3, y: y >> 3 }), tile);
  const w = await until(() => aggs.get(wide)![0], 3000, 'wide aggregates');
  assert.equal(w.total, 3);
  assert.equal(w.z, 8);
  // Refreshed: a fourth entity shows up in a later frame.
  const d4 = await driver(B, 'ag-4', 'lisbon');
  await d4.send({ id: 'ag-4', lat: lat - 0.02, lon: lon - 0.02, ts: Date.now(), seq: 1 });
  const later = await until(() => aggs.get(tile)!.find((a) => a.total === 4), 3000, 'refreshed aggregates');
  assert.equal(later.cells.reduce((s, c) => s + c[2], 0), 4);
  await until(() => aggs.get(wide)!.find((a) => a.total === 4), 3000, 'refreshed wide aggregates');
  assert.deepEqual(vehicles, [], 'no per-vehicle updates below the aggregate zoom');
});

test('every transport gets each frame once: WebSocket (native publish), long-polling and polling upgraded to WebSocket', async () => {
  const lat = 41.175, lon = -8.59;
  const tile = cellOf(lon, lat, 16);
  const polled = async (gw: Gw, sub: string, transports: ('websocket' | 'polling')[]): Promise<MapClient> => {
    const m = await MapClient.connect(gw.url, await token(sub, ['subscribe'], 'acme'), { transports });
    open.push(m);
    return m;
  };
  const transportOf = (m: MapClient): string => m.socket.io.engine.transport.name;
  const [wsA, pollA, upB, wsB] = await Promise.all([map(A, 'tr-ws-a'), polled(A, 'tr-poll-a', ['polling']), polled(B, 'tr-up-b', ['polling', 'websocket']), map(B, 'tr-ws-b')]);
  await until(() => transportOf(upB) === 'websocket', 5000, 'upgrade to WebSocket');
  assert.equal(transportOf(pollA), 'polling');
  const clients = { wsA, pollA, upB, wsB };
  const seen = new Map<string, number[]>();
  for (const [name, m] of Object.entries(clients)) {
    await m.subscribeTiles([tile]);
    const list: number[] = [];
    seen.set(name, list);
    m.on('update', (t: string, us: EntityUpdate[]) => { if (t === tile) for (const u of us) if (u.id === 'car-tr') list.push(u.ts); });
  }
  await sleep(400);
  const d = await driver(A, 'car-tr');
  const t0 = Date.now() - 60_000;
  const sent: number[] = [];
  const send = async (i: number, names: string[]): Promise<void> => {
    const ts = t0 + i * 1000;
    sent.push(ts);
    await d.send({ id: 'car-tr', lat: lat + i * 1e-5, lon, ts, seq: i });
    await until(() => names.every((n) => seen.get(n)!.includes(ts)), 5000, `frame ${i} on ${names.join(', ')}`);
  };
  for (let i = 1; i <= 3; i++) await send(i, Object.keys(clients));
  await sleep(200);
  for (const [name, list] of seen) assert.deepEqual(list, sent, `${name}: each update exactly once`);
  // With the long-polling client gone, gateway A is back on the native publish alone.
  await pollA.close();
  await sleep(200);
  const before = sent.length;
  for (let i = 4; i <= 5; i++) await send(i, ['wsA', 'upB', 'wsB']);
  await sleep(200);
  for (const name of ['wsA', 'upB', 'wsB']) assert.deepEqual(seen.get(name), sent, `${name}: each update exactly once`);
  assert.equal(seen.get('pollA')!.length, before);
});
