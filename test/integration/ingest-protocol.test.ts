import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { DriverClient, type DriverEncoding, type SendResult } from '../../src/clients/driver-client.js';
import { decodeAccepted } from '../../src/store/redis/codec.js';
import { cellOf } from '../../src/geo/tiles.js';
import { token } from '../helpers/tokens.js';
import { startIngestEnv, type IngestEnv } from './ingest-helpers.js';

/** Protocol conformance over both encodings: frames, batches, every per-ping and per-frame error code, HTTP ingest. */
let env: IngestEnv;
const MAX_BATCH = 20;
const MAX_PAYLOAD = 8192;

before(async () => {
  env = await startIngestEnv({ INGEST_MAX_BATCH: String(MAX_BATCH), INGEST_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD), GRID_ZOOM: '13' });
});
after(async () => { await env?.stop(); });

const summary = (r: SendResult) => ({ count: r.count, seq: r.seq, errors: r.errors.map((e) => [e.index ?? null, e.code, e.id ?? null, e.seq ?? null]) });

async function entityState(tenant: string, id: string) {
  const p = await env.redis.hgetBuffer(env.keys.entity(tenant, id), 'p');
  return p ? decodeAccepted(p) : undefined;
}

/** A mixed batch: good pings and one of each per-ping error. */
function mixedBatch(id: string, base: number) {
  const now = Date.now();
  return [
    { id, lat: 41.15, lon: -8.61, ts: now - 5000, seq: base + 1, speed: 8.5, heading: 90, accuracy: 5, kind: 'car', status: 'available', meta: { plate: 'AA-00-01' } },
    { id, lat: 91, lon: -8.61, ts: now, seq: base + 2 }, // INVALID_COORDINATES
    { id, lat: 41.15, lon: -8.61, ts: now, seq: base + 3, color: 'red' }, // INVALID_PING (unknown field)
    { id, lat: 41.15, lon: -8.61, ts: now + 3_600_000, seq: base + 4 }, // TS_IN_FUTURE
    { id, lat: 41.15, lon: -8.61, ts: now - 3 * 86_400_000, seq: base + 5 }, // TS_TOO_OLD
    { id: 'someone-else', lat: 41.15, lon: -8.61, ts: now, seq: base + 6 }, // NOT_YOUR_ENTITY
    { id, lat: 40.4168, lon: -3.7038, ts: now - 4000, seq: base + 7 }, // IMPLAUSIBLE_JUMP (Madrid 1 s later)
    { id, lat: 41.1501, lon: -8.6101, ts: now - 3000, seq: base + 8, speed: 'fast' }, // INVALID_PING (type)
    { id, lat: 41.1502, lon: -8.6102, ts: now - 2000, seq: base + 9 },
  ];
}

const EXPECTED_ERRORS = [
  [1, 'INVALID_COORDINATES'], [2, 'INVALID_PING'], [3, 'TS_IN_FUTURE'], [4, 'TS_TOO_OLD'], [5, 'NOT_YOUR_ENTITY'], [6, 'IMPLAUSIBLE_JUMP'], [7, 'INVALID_PING'],
];

for (const encoding of ['json', 'msgpack'] as DriverEncoding[]) {
  test(`${encoding}: a batch with bad pings: each bad one gets its error, the good neighbours are acked and stored`, async () => {
    const id = `car-${encoding}`;
    const c = await DriverClient.connect(env.gw.url, await token(id, ['ingest']), { encoding });
    assert.equal(c.welcome.sub, id);
    assert.equal(c.welcome.maxBatch, MAX_BATCH);
    const r = await c.send(mixedBatch(id, 0));
    assert.equal(r.frame, 1);
    assert.equal(r.count, 2);
    assert.equal(r.seq, 9);
    assert.deepEqual(r.errors.map((e) => [e.index, e.code]), EXPECTED_ERRORS);
    assert.ok(r.errors.every((e) => e.frame === 1 && typeof e.message === 'string' && e.message.length > 0));
    const notMine = r.errors.find((e) => e.code === 'NOT_YOUR_ENTITY')!;
    assert.equal(notMine.id, 'someone-else');
    assert.equal(notMine.seq, 6);
    const s = await entityState('acme', id);
    assert.equal(s?.seq, 9);
    assert.equal(s?.lat, 41.1502);
    // A single ping frame, and acks arrive in order for pipelined frames.
    const t0 = Date.now();
    const results = await Promise.all([1, 2, 3, 4, 5].map((k) => c.send({ id, lat: 41.1502 + k * 1e-4, lon: -8.6102, ts: t0 - 1000 + k, seq: 100 + k })));
    assert.deepEqual(results.map((x) => [x.frame, x.count, x.seq]), [[2, 1, 101], [3, 1, 102], [4, 1, 103], [5, 1, 104], [6, 1, 105]]);
    // A frame answered at once (undecodable) between frames that wait for Redis: still in order.
    const mixed = await Promise.all([
      c.send({ id, lat: 41.1503, lon: -8.6102, ts: t0 + 10, seq: 110 }),
      encoding === 'json' ? c.sendRaw('not json', false) : c.sendRaw(new Uint8Array([0x92, 0x01]), true),
      c.send({ id, lat: 41.1504, lon: -8.6102, ts: t0 + 11, seq: 111 }),
    ]);
    assert.deepEqual(mixed.map((x) => [x.frame, x.count, x.seq, x.errors.map((e) => e.code)]), [[7, 1, 110, []], [8, 0, null, ['BAD_FRAME']], [9, 1, 111, []]]);
    // Frame-level errors: not JSON / not MessagePack, empty batch, batch too large. Each still gets an ack (count 0).
    const bad = encoding === 'json' ? await c.sendRaw('{"id": "x", lat', false) : await c.sendRaw(new Uint8Array([0x92, 0x01]), true);
    assert.deepEqual(summary(bad), { count: 0, seq: null, errors: [[null, 'BAD_FRAME', null, null]] });
    const empty = await c.send([]);
    assert.equal(empty.errors[0]?.code, 'BAD_FRAME');
    const big = await c.send(Array.from({ length: MAX_BATCH + 1 }, (_, k) => ({ id, lat: 1, lon: 1, ts: Date.now(), seq: k })));
    assert.equal(big.errors[0]?.code, 'BATCH_TOO_LARGE');
    assert.equal(big.count, 0);
    // NaN travels only in MessagePack.
    if (encoding === 'msgpack') {
      const nan = await c.send({ id, lat: Number.NaN, lon: 1, ts: Date.now() });
      assert.equal(nan.errors[0]?.code, 'INVALID_COORDINATES');
    }
    // The connection survived all of it.
    const ok = await c.send({ id, lat: 41.1503, lon: -8.6103, ts: Date.now(), seq: 200 });
    assert.equal(ok.count, 1);
    await c.close();
  });
}

test('a ping whose meta is larger than 512 bytes is refused alone (INVALID_PING); its neighbours are stored', async () => {
  const id = 'car-meta';
  const c = await DriverClient.connect(env.gw.url, await token(id, ['ingest']), { encoding: 'msgpack' });
  const now = Date.now();
  const meta = Object.fromEntries(Array.from({ length: 120 }, (_, k) => [`k${k}`, k + 0.5]));
  const r = await c.send([
    { id, lat: 41.15, lon: -8.61, ts: now - 2000, seq: 1, meta: { plate: 'AA-00-01' } },
    { id, lat: 41.15, lon: -8.61, ts: now - 1000, seq: 2, meta },
    { id, lat: 41.1501, lon: -8.6101, ts: now, seq: 3 },
  ]);
  assert.deepEqual(summary(r), { count: 2, seq: 3, errors: [[1, 'INVALID_PING', id, 2]] });
  assert.match(r.errors[0]!.message, /meta: at most 512 bytes/);
  assert.equal((await entityState('acme', id))?.seq, 3);
  await c.close();
});

test('both encodings produce identical outcomes and identical stored state', async () => {
  const outs: unknown[] = [];
  const states: unknown[] = [];
  for (const encoding of ['json', 'msgpack'] as DriverEncoding[]) {
    const id = `twin-${encoding}`;
    const c = await DriverClient.connect(env.gw.url, await token(id, ['ingest']), { encoding });
    const batch = mixedBatch(id, 0).map((p) => (p.id === id ? p : p));
    const r = await c.send(batch);
    outs.push(summary({ ...r, errors: r.errors.map((e) => ({ ...e, id: e.id === id ? 'ME' : e.id })) }));
    const s = await entityState('acme', id);
    const { id: _i, rx: _r, ts: _t, ...rest } = s!;
    states.push(rest);
    await c.close();
  }
  assert.deepEqual(outs[0], outs[1]);
  assert.deepEqual(states[0], states[1]);
});

test('duplicates are acked but not streamed twice; an older ping goes to history only', async () => {
  const id = 'dup-1';
  const c = await DriverClient.connect(env.gw.url, await token(id, ['ingest']), { encoding: 'msgpack' });
  const t = Date.now();
  const p = { id, lat: -23.55, lon: -46.63, ts: t - 2000, seq: 1 };
  assert.equal((await c.send(p)).count, 1);
  assert.equal((await c.send([p, p])).count, 2, 'duplicates count as durable');
  assert.equal((await c.send({ ...p, ts: t - 1000, seq: 2, lat: -23.5501 })).count, 1);
  assert.equal((await c.send({ ...p, ts: t - 5000, seq: 0, lat: -23.551 })).count, 1); // older
  const s = await entityState('acme', id);
  assert.equal(s?.seq, 2);
  const cell = cellOf(-46.63, -23.55, 13);
  const entries = await env.redis.xrangeBuffer(env.keys.cell('acme', cell).stream, '-', '+');
  const seqs = entries.map(([, f]) => decodeAccepted(f[1]!)).filter((x) => x.id === id).map((x) => x.seq);
  assert.deepEqual(seqs, [1, 2, 0]);
  await c.close();
});

test('frame larger than the maximum payload closes with 4009', async () => {
  const c = await DriverClient.connect(env.gw.url, await token('big-1', ['ingest']));
  const errs: string[] = [];
  c.on('errorFrame', (e) => errs.push(e.code));
  const pending = c.sendRaw(JSON.stringify({ id: 'big-1', lat: 1, lon: 1, ts: Date.now(), meta: { pad: 'x'.repeat(MAX_PAYLOAD) } }), false).catch((e: unknown) => e);
  const closed = await c.closed;
  assert.equal(closed.code, 4009);
  assert.ok(await pending instanceof Error);
  assert.deepEqual(errs, ['FRAME_TOO_LARGE']);
});

test('a frame beyond uWS\'s own cap (2 × max + 1 KB) is dropped by uWS: 1006, counted and logged with its reason', async () => {
  const c = await DriverClient.connect(env.gw.url, await token('huge-1', ['ingest']));
  c.sendRaw(JSON.stringify({ id: 'huge-1', lat: 1, lon: 1, ts: Date.now(), meta: { pad: 'x'.repeat(3 * MAX_PAYLOAD) } }), false).catch(() => undefined);
  assert.equal((await c.closed).code, 1006);
  const line = await env.gw.waitForLog((l) => l.msg === 'ingest socket closed by uWS' && l.sub === 'huge-1');
  assert.equal(line.reason, 'Received too big message');
  const metrics = await (await fetch(`${env.gw.url}/metrics`)).text();
  assert.match(metrics, /geoflux_ingest_closes_total\{code="1006"\} [1-9]/);
});

test('POST /v1/pings: JSON and MessagePack bodies, 200 / 207 / 4xx with per-ping errors', async () => {
  const tok = await token('http-1', ['ingest']);
  const now = Date.now();
  const good = { id: 'http-1', lat: 48.85, lon: 2.35, ts: now - 1000, seq: 1 };
  const post = (body: string | Uint8Array, type: string) => fetch(`${env.gw.url}/v1/pings`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': type }, body });
  const r1 = await post(JSON.stringify(good), 'application/json');
  assert.equal(r1.status, 200);
  assert.deepEqual(await r1.json(), { accepted: 1, seq: 1, errors: [] });
  const r2 = await post(pack([{ ...good, ts: now - 500, seq: 2 }, { ...good, lat: 100, seq: 3 }]), 'application/msgpack');
  assert.equal(r2.status, 207);
  const b2 = await r2.json() as { accepted: number; errors: { index: number; code: string }[] };
  assert.equal(b2.accepted, 1);
  assert.deepEqual(b2.errors.map((e) => [e.index, e.code]), [[1, 'INVALID_COORDINATES']]);
  const r3 = await post(JSON.stringify({ ...good, id: 'other' }), 'application/json');
  assert.equal(r3.status, 403);
  assert.equal((await r3.json() as { errors: { code: string }[] }).errors[0]!.code, 'NOT_YOUR_ENTITY');
  const r4 = await post('nope', 'application/json');
  assert.equal(r4.status, 400);
  assert.equal((await r4.json() as { error: { code: string } }).error.code, 'BAD_FRAME');
  const r5 = await post(JSON.stringify({ ...good, meta: { pad: 'x'.repeat(MAX_PAYLOAD) } }), 'application/json');
  assert.equal(r5.status, 413);
  const r6 = await post(JSON.stringify(good), 'text/plain');
  assert.equal(r6.status, 400);
  const r7 = await post(JSON.stringify(Array.from({ length: MAX_BATCH + 1 }, () => good)), 'application/json');
  assert.equal(r7.status, 413);
  assert.equal((await r7.json() as { error: { code: string } }).error.code, 'BATCH_TOO_LARGE');
  assert.equal((await entityState('acme', 'http-1'))?.seq, 2);
});

test('queries: /v1/entities/:id, /v1/within (bbox, tile, geojson), /openapi.json covers the routes', async () => {
  const q = { authorization: `Bearer ${await token('dispatch', ['query'])}` };
  const e = await fetch(`${env.gw.url}/v1/entities/http-1`, { headers: q });
  assert.equal(e.status, 200);
  const body = await e.json() as { id: string; lat: number; seq: number; lastSeen: number };
  assert.equal(body.id, 'http-1');
  assert.equal(body.seq, 2);
  const missing = await fetch(`${env.gw.url}/v1/entities/nobody`, { headers: q });
  assert.equal(missing.status, 404);
  assert.equal((await missing.json() as { error: { code: string } }).error.code, 'NOT_FOUND');
  const w = await (await fetch(`${env.gw.url}/v1/within?bbox=2.3,48.8,2.4,48.9`, { headers: q })).json() as { results: { id: string }[] };
  assert.deepEqual(w.results.map((r) => r.id), ['http-1']);
  const tile = cellOf(2.35, 48.85, 13);
  const g = await fetch(`${env.gw.url}/v1/within?tile=${tile}&format=geojson`, { headers: q });
  const gj = await g.json() as { type: string; features: { id: string; geometry: { coordinates: number[] } }[] };
  assert.equal(gj.type, 'FeatureCollection');
  assert.equal(gj.features[0]?.id, 'http-1');
  // truncated: true exactly when more than `limit` entities matched.
  const t0 = Date.now();
  for (let k = 0; k < 10; k++) {
    const c = await DriverClient.connect(env.gw.url, await token(`trunc-${k}`, ['ingest'], 'trunc'), { encoding: 'msgpack' });
    assert.equal((await c.send({ id: `trunc-${k}`, lat: 10.001 + k * 1e-4, lon: 20.001, ts: t0 })).count, 1);
    await c.close();
  }
  const tq = { authorization: `Bearer ${await token('dispatch', ['query'], 'trunc')}` };
  const within = async (limit: number) => await (await fetch(`${env.gw.url}/v1/within?bbox=20,10,20.01,10.01&limit=${limit}`, { headers: tq })).json() as { results: { id: string }[]; truncated: boolean };
  for (const [limit, n, truncated] of [[3, 3, true], [9, 9, true], [10, 10, false], [50, 10, false]] as const) {
    const r = await within(limit);
    assert.deepEqual([r.results.length, r.truncated], [n, truncated], `limit=${limit}`);
  }
  const badBox = await fetch(`${env.gw.url}/v1/within?bbox=1,2,3`, { headers: q });
  assert.equal(badBox.status, 400);
  const doc = await (await fetch(`${env.gw.url}/openapi.json`)).json() as { openapi: string; paths: Record<string, unknown> };
  assert.match(doc.openapi, /^3\./);
  for (const p of ['/v1/nearby', '/v1/within', '/v1/entities/{id}', '/v1/pings', '/v1/ingest', '/healthz', '/readyz', '/metrics', '/openapi.json', '/v1/entities/{id}/track', '/v1/cells/{z}/{x}/{y}/stats', '/v1/stats']) assert.ok(doc.paths[p], p);
  const metrics = await (await fetch(`${env.gw.url}/metrics`)).text();
  for (const m of ['geoflux_pings_accepted_total', 'geoflux_pings_rejected_total{code="IMPLAUSIBLE_JUMP"}', 'geoflux_ingest_frames_total', 'geoflux_ingest_batch_pings', 'geoflux_redis_write_seconds', 'geoflux_ingest_connections', 'geoflux_process_cpu_wait_seconds_total']) assert.ok(metrics.includes(m), m);
});
