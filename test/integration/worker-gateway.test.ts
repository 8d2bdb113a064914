import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import pg from 'pg';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, startWorker, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';
import { cellOf, tileBBox } from '../../src/geo/tiles.js';
import type { AcceptedPing, Ping } from '../../src/protocol/ping.js';
import { WIN, expectedPositions, expectedCells, uniquePings, persistedPings, readPositions, readCells, assertRowsMatch, waitFor } from './worker-model.js';

/**
 * The whole history path: pings (duplicates, out of order, a cell-boundary crossing, two
 * tenants) sent through the real gateway's /v1/ingest, persisted by a real worker, then
 * read back through GET /v1/entities/:id/track and /v1/cells/:z/:x/:y/stats. Both modes.
 */
const ZOOM = 13;
let redis: Redis;
before(() => { redis = new Redis(testServices().redisUrl); });
after(async () => { await redis.quit(); });

interface Driver { tenant: string; id: string; pings: Ping[] }

function drivers(): Driver[] {
  const t0 = Math.floor((Date.now() - 10 * 60_000) / WIN) * WIN + 3_000;
  // cross-1 starts 120 m west of an ingest-cell boundary and drives east at 12 m/s.
  const boundary = tileBBox({ z: ZOOM, x: 3900, y: 3066 })[2];
  const lat0 = 41.155;
  const mPerDegLon = 111_320 * Math.cos((lat0 * Math.PI) / 180);
  const out: Driver[] = [
    { tenant: 'acme', id: 'cross-1', pings: [] },
    { tenant: 'acme', id: 'slow-2', pings: [] },
    { tenant: 'beta', id: 'other-3', pings: [] },
  ];
  for (let s = 1; s <= 24; s++) {
    const ts = t0 + s * 1000;
    out[0]!.pings.push({ id: 'cross-1', ts, seq: s, lat: lat0, lon: boundary - 120 / mPerDegLon + (s * 12) / mPerDegLon, speed: 12, heading: 90, status: 'on_trip' });
    if (s % 2 === 0) out[1]!.pings.push({ id: 'slow-2', ts: ts + 333, seq: s, lat: 41.150 + s * 1e-5, lon: -8.62, speed: 1 + (s % 3) });
    if (s % 3 === 0) out[2]!.pings.push({ id: 'other-3', ts: ts + 77, seq: s, lat: 41.151, lon: -8.62 + s * 1e-5 });
  }
  return out;
}

async function send(gw: { url: string }, d: Driver): Promise<void> {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ingest`, { headers: { authorization: `Bearer ${await token(d.id, ['ingest'], d.tenant)}` } });
  const frames: Record<string, unknown>[] = [];
  ws.on('message', (m) => frames.push(JSON.parse(m.toString()) as Record<string, unknown>));
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  // Out of order: swap neighbours; duplicates: every 4th ping again at the end; one batch frame.
  const order = [...d.pings];
  for (let i = 0; i + 1 < order.length; i += 3) [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
  const dups = d.pings.filter((_, i) => i % 4 === 0);
  let sent = 0;
  for (const p of order) { ws.send(JSON.stringify(p)); sent++; }
  ws.send(JSON.stringify(dups)); sent++;
  await waitFor(() => (frames.filter((f) => f.type === 'ack').length >= sent ? true : undefined), 10000, `${d.id}: acks`);
  const errors = frames.filter((f) => f.type === 'error');
  assert.deepEqual(errors, [], `${d.id}: no ping rejected`);
  ws.close();
}

const accepted = (ds: Driver[]): AcceptedPing[] => ds.flatMap((d) => d.pings.map((p) => ({ ...p, tenant: d.tenant, cell: cellOf(p.lon, p.lat, ZOOM), rx: 0 })));

async function scenario(mode: 'window' | 'raw'): Promise<void> {
  const db = await createTestDatabase();
  const env = { REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), FLUSH_INTERVAL_MS: '300', GRID_ZOOM: String(ZOOM), PERSIST_MODE: mode };
  let gateway: (Child & { url: string }) | undefined;
  let worker: Child | undefined;
  const client = new pg.Client({ connectionString: db.url });
  try {
    gateway = await startGateway(env);
    worker = await startWorker(env);
    await client.connect();
    const ds = drivers();
    for (const d of ds) await send(gateway, d);
    const all = accepted(ds);
    assert.ok(new Set(all.filter((p) => p.id === 'cross-1').map((p) => p.cell)).size === 2, 'cross-1 crosses an ingest-cell boundary');
    const want = uniquePings(all).length;
    await waitFor(async () => ((await persistedPings(client)) === want ? true : undefined), 20000, `${want} pings persisted`);
    await new Promise((r) => setTimeout(r, 700)); // one more flush: nothing else may change
    const expectedRows = expectedPositions(all, mode);
    assertRowsMatch(await readPositions(client), expectedRows, ['speed', 'mean_speed'], `positions (${mode})`);
    const cells = expectedCells(all);
    assertRowsMatch(await readCells(client), cells, ['mean_speed', 'max_speed'], `cell_stats (${mode})`);

    // Track: GeoJSON LineString with per-point times, tenant-scoped.
    const q = await token('dispatch', ['query']);
    const from = new Date(all[0]!.ts - 60_000).toISOString(), to = String(Date.now());
    const res = await fetch(`${gateway.url}/v1/entities/cross-1/track?from=${encodeURIComponent(from)}&to=${to}`, { headers: { authorization: `Bearer ${q}` } });
    assert.equal(res.status, 200);
    const f = await res.json() as { type: string; geometry: { type: string; coordinates: number[][] }; properties: { times: number[]; count: number; ping_counts: number[] } };
    const mine = expectedRows.filter((r) => r.entity_id === 'cross-1');
    assert.equal(f.type, 'Feature');
    assert.equal(f.geometry.type, 'LineString');
    assert.deepEqual(f.properties.times, mine.map((r) => r.ts));
    assert.deepEqual(f.geometry.coordinates, mine.map((r) => [r.lon, r.lat]));
    assert.deepEqual(f.properties.ping_counts, mine.map((r) => r.ping_count));
    // limit keeps the most recent points
    const lim = await (await fetch(`${gateway.url}/v1/entities/cross-1/track?from=${encodeURIComponent(from)}&limit=2&token=${q}`)).json() as { properties: { times: number[]; truncated: boolean } };
    assert.deepEqual(lim.properties.times, mine.slice(-2).map((r) => r.ts));
    assert.equal(lim.properties.truncated, true);
    // another tenant sees nothing
    const beta = await (await fetch(`${gateway.url}/v1/entities/cross-1/track?from=${encodeURIComponent(from)}`, { headers: { authorization: `Bearer ${await token('x', ['query'], 'beta')}` } })).json() as { geometry: unknown; properties: { count: number } };
    assert.equal(beta.geometry, null);
    assert.equal(beta.properties.count, 0);
    // clear errors
    const code = async (path: string, scopes: ('query' | 'ingest')[] | null): Promise<[number, string]> => {
      const r = await fetch(`${gateway!.url}${path}`, scopes ? { headers: { authorization: `Bearer ${await token('dispatch', scopes)}` } } : {});
      return [r.status, ((await r.json()) as { error: { code: string } }).error.code];
    };
    assert.deepEqual(await code('/v1/entities/cross-1/track', null), [401, 'UNAUTHORIZED']);
    assert.deepEqual(await code('/v1/entities/cross-1/track', ['ingest']), [403, 'FORBIDDEN']);
    assert.deepEqual(await code('/v1/entities/cross-1/track?from=yesterday', ['query']), [400, 'BAD_REQUEST']);
    assert.deepEqual(await code('/v1/entities/cross-1/track?from=2000&to=1000', ['query']), [400, 'BAD_REQUEST']);
    assert.deepEqual(await code('/v1/entities/cross-1/track?from=0&to=2000000000000', ['query']), [400, 'BAD_REQUEST']);
    assert.deepEqual(await code('/v1/entities/cross-1/track?limit=100000', ['query']), [400, 'BAD_REQUEST']);
    assert.deepEqual(await code('/v1/cells/14/1/1/stats', ['query']), [400, 'BAD_REQUEST']);
    assert.deepEqual(await code('/v1/cells/13/99999/1/stats', ['query']), [400, 'BAD_REQUEST']);

    // Cell stats at the ingest zoom: exactly the model's windows for that cell.
    const c0 = cells.find((c) => c.tenant === 'acme')!;
    const sres = await fetch(`${gateway.url}/v1/cells/${c0.cell}/stats?from=${encodeURIComponent(from)}&to=${to}`, { headers: { authorization: `Bearer ${q}` } });
    assert.equal(sres.status, 200);
    const s = await sres.json() as { windows: { start: number; ping_count: number; entity_count: number; mean_speed: number | null; max_speed: number | null; bbox: number[] }[] };
    const mineCells = cells.filter((c) => c.tenant === 'acme' && c.cell === c0.cell);
    assert.deepEqual(s.windows.map((w) => [w.start, w.ping_count, w.entity_count]), mineCells.map((c) => [c.win, c.ping_count, c.entity_count]));
    s.windows.forEach((w, i) => assert.ok(Math.abs((w.mean_speed ?? 0) - (mineCells[i]!.mean_speed ?? 0)) < 1e-9));
    // By parent tile (zoom 12): the ingest cells inside it, merged per window.
    const [, x, y] = c0.cell.split('/').map(Number) as [number, number, number];
    const parent = `12/${x >> 1}/${y >> 1}`;
    const pres = await (await fetch(`${gateway.url}/v1/tiles/${parent}/stats?from=${encodeURIComponent(from)}&to=${to}&token=${q}`)).json() as { windows: { start: number; ping_count: number }[] };
    const inParent = cells.filter((c) => c.tenant === 'acme' && c.cx >> 1 === x >> 1 && c.cy >> 1 === y >> 1);
    const byWin = new Map<number, number>();
    for (const c of inParent) byWin.set(c.win, (byWin.get(c.win) ?? 0) + c.ping_count);
    assert.deepEqual(pres.windows.map((w) => [w.start, w.ping_count]), [...byWin.entries()].sort((a, b) => a[0] - b[0]));
  } finally {
    await client.end().catch(() => undefined);
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await db.drop();
  }
}

test('window mode through the real gateway: rows, aggregates, track and cell stats', () => scenario('window'));
test('raw mode through the real gateway: rows, aggregates, track and cell stats', () => scenario('raw'));
