import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createLiveWriter } from '../../src/store/redis/live-writer.js';
import { createSweeper } from '../../src/liveness/sweeper.js';
import { createLogger } from '../../src/log/logger.js';
import { cellOf, haversineMeters, tileBBox, tileOf } from '../../src/geo/tiles.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { token } from '../helpers/tokens.js';
import { startIngestEnv, prng, type IngestEnv } from './ingest-helpers.js';

/**
 * /v1/nearby and /v1/within against a brute-force haversine ground truth over thousands of
 * random live entities: city, cell borders, the antimeridian, near the poles; stale entities absent.
 */
let env: IngestEnv;
let auth: Record<string, string>;
const Z = 13;
const TTL = 5;
const rand = prng(20261122);
interface E { id: string; lat: number; lon: number; stale: boolean }
const entities: E[] = [];

function spread(prefix: string, n: number, lat0: number, lat1: number, lon0: number, lon1: number, staleShare = 0): void {
  for (let i = 0; i < n; i++) {
    let lon = lon0 + rand() * (lon1 - lon0);
    if (lon > 180) lon -= 360;
    entities.push({ id: `${prefix}-${i}`, lat: lat0 + rand() * (lat1 - lat0), lon, stale: rand() < staleShare });
  }
}

before(async () => {
  env = await startIngestEnv({ ENTITY_TTL_SECONDS: String(TTL), GRID_ZOOM: String(Z), QUERY_MAX_LIMIT: '5000', SWEEP_INTERVAL_MS: '600000' });
  auth = { authorization: `Bearer ${await token('dispatch', ['query'])}` };
  spread('porto', 2500, 41.05, 41.25, -8.75, -8.45, 0.1);
  const corner = tileBBox(tileOf(-8.61, 41.15, Z)); // a cell corner: four cells meet
  spread('corner', 600, corner[1] - 0.01, corner[1] + 0.01, corner[0] - 0.01, corner[0] + 0.01);
  spread('fiji', 600, -17.2, -16.8, 179.8, 180.2); // across the antimeridian
  spread('north', 500, 84.95, 85.05, -1, 1);
  spread('south', 300, -85.05, -84.97, 100, 101);
  const writer = createLiveWriter(env.redis, env.keys, { entityTtlSeconds: TTL, streamMaxLen: 100000, maxSpeedMps: 90, jumpSlackMeters: 100 });
  const now = Date.now();
  const pings: AcceptedPing[] = entities.map((e) => {
    const rx = e.stale ? now - (TTL + 2) * 1000 : now;
    return { id: e.id, lat: e.lat, lon: e.lon, ts: rx, tenant: 'acme', cell: cellOf(e.lon, e.lat, Z), rx };
  });
  for (let i = 0; i < pings.length; i += 1000) await writer.write(pings.slice(i, i + 1000));
});
after(async () => { await env?.stop(); });

interface Hit { id: string; distance: number; lat: number; lon: number }

async function nearby(lat: number, lon: number, radius: number, limit: number): Promise<Hit[]> {
  const res = await fetch(`${env.gw.url}/v1/nearby?lat=${lat}&lon=${lon}&radius=${radius}&limit=${limit}`, { headers: auth });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { results: Hit[] }).results;
}

/** Compares with the brute force; GEO stores 52-bit geohashes (< 1 m error): a 1 m band at the edge is tolerated. */
function check(lat: number, lon: number, radius: number, limit: number, hits: Hit[], label: string): void {
  const truth = entities.filter((e) => !e.stale).map((e) => ({ id: e.id, d: haversineMeters(lat, lon, e.lat, e.lon) })).filter((t) => t.d <= radius + 1).sort((a, b) => a.d - b.d);
  const got = new Map(hits.map((h) => [h.id, h]));
  assert.equal(got.size, hits.length, `${label}: no duplicates`);
  for (let i = 1; i < hits.length; i++) assert.ok(hits[i]!.distance >= hits[i - 1]!.distance, `${label}: sorted by distance`);
  for (const h of hits) {
    const e = entities.find((x) => x.id === h.id)!;
    assert.ok(!e.stale, `${label}: stale ${h.id} returned`);
    assert.ok(Math.abs(haversineMeters(lat, lon, e.lat, e.lon) - h.distance) < 1, `${label}: distance of ${h.id}`);
  }
  if (truth.filter((t) => t.d <= radius - 1).length <= limit) {
    for (const t of truth) if (t.d <= radius - 1) assert.ok(got.has(t.id), `${label}: missing ${t.id} at ${t.d.toFixed(1)} m`);
    assert.ok(hits.length <= truth.length, `${label}: extra results`);
  } else {
    assert.equal(hits.length, limit, `${label}: full page`);
    // The page holds the `limit` nearest (ties within the 1 m band tolerated).
    const cut = truth[limit - 1]!.d;
    for (const t of truth) if (t.d < cut - 1) assert.ok(got.has(t.id), `${label}: nearer ${t.id} missing`);
  }
}

test('city: random points and radii, complete result sets and top-k pages', async () => {
  for (let q = 0; q < 25; q++) {
    const lat = 41.07 + rand() * 0.16, lon = -8.73 + rand() * 0.26;
    const radius = 100 + rand() * 8000;
    const limit = q % 3 === 0 ? 10 : 5000;
    check(lat, lon, radius, limit, await nearby(lat, lon, radius, limit), `porto#${q}`);
  }
});

test('cell borders: queries centred on and near a corner where four cells meet', async () => {
  const corner = tileBBox(tileOf(-8.61, 41.15, Z));
  for (const [dl, dn, r] of [[0, 0, 300], [0.0005, -0.0005, 900], [-0.002, 0.001, 1500], [0, 0, 50]] as const) {
    const lat = corner[1] + dl, lon = corner[0] + dn;
    check(lat, lon, r, 5000, await nearby(lat, lon, r, 5000), `corner ${dl},${dn},${r}`);
  }
});

test('antimeridian: queries on either side see entities on the other', async () => {
  for (const [lat, lon, r] of [[-17, 180, 15000], [-17, 179.95, 20000], [-17, -179.97, 12000], [-16.9, -180, 5000]] as const) {
    const hits = await nearby(lat, lon, r, 5000);
    assert.ok(hits.some((h) => h.lon > 0) && hits.some((h) => h.lon < 0), `both sides at ${lat},${lon}`);
    check(lat, lon, r, 5000, hits, `fiji ${lat},${lon}`);
  }
});

test('near the poles (±85.05112878 is the Web Mercator / Redis GEO limit)', async () => {
  for (const [lat, lon, r] of [[85, 0, 4000], [85.05, 0.5, 3000], [-85.0, 100.5, 4000], [-85.05112878, 100.2, 2000]] as const) {
    check(lat, lon, r, 5000, await nearby(lat, lon, r, 5000), `pole ${lat},${lon}`);
  }
  const beyond = await fetch(`${env.gw.url}/v1/nearby?lat=85.06&lon=0&radius=100`, { headers: auth });
  assert.equal(beyond.status, 400);
});

test('within: bbox across the antimeridian and a tile match the brute force', async () => {
  const res = await fetch(`${env.gw.url}/v1/within?bbox=179.9,-17.1,-179.9,-16.9&limit=5000`, { headers: auth });
  const got = ((await res.json()) as { results: { id: string }[] }).results.map((r) => r.id).sort();
  const inLon = (lon: number) => lon >= 179.9 || lon <= -179.9;
  const truth = entities.filter((e) => !e.stale && e.lat >= -17.1 && e.lat <= -16.9 && inLon(e.lon)).map((e) => e.id).sort();
  assert.ok(truth.length > 50);
  assert.deepEqual(got, truth);
  const t = tileOf(-8.61, 41.15, 11);
  const [w, s, e, n] = tileBBox(t);
  const tr = await fetch(`${env.gw.url}/v1/within?tile=${t.z}/${t.x}/${t.y}&limit=5000`, { headers: auth });
  const tileIds = ((await tr.json()) as { results: { id: string }[] }).results.map((r) => r.id).sort();
  const tileTruth = entities.filter((x) => !x.stale && x.lat >= s && x.lat <= n && x.lon >= w && x.lon <= e).map((x) => x.id).sort();
  assert.deepEqual(tileIds, tileTruth);
});

test('staleness: the sweeper removes exactly the stale entities from the GEO sets', async () => {
  const stale = entities.filter((e) => e.stale);
  assert.ok(stale.length > 100);
  const log = createLogger({ log: { level: 'silent', pretty: false }, env: 'test', instanceId: 't' } as never, 'gateway');
  const gone: string[] = [];
  const sweeper = createSweeper(env.redis, env.keys, { entityTtlSeconds: TTL, intervalMs: 1000, maxCells: 100000, batch: 5000 }, (g) => gone.push(...g.map((x) => x.id)), log);
  await sweeper.sweepOnce();
  assert.deepEqual(gone.sort(), stale.map((e) => e.id).sort());
  const still = await Promise.all(stale.slice(0, 50).map((e) => env.redis.zscore(env.keys.cell('acme', cellOf(e.lon, e.lat, Z)).geo, e.id)));
  assert.ok(still.every((s) => s === null));
  const live = entities.find((e) => !e.stale)!;
  assert.notEqual(await env.redis.zscore(env.keys.cell('acme', cellOf(live.lon, live.lat, Z)).geo, live.id), null);
});
