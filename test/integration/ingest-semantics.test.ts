import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { testServices, randomKeyPrefix } from '../helpers/services.js';
import { waitFor } from '../helpers/wait.js';
import { createKeys, type Keys } from '../../src/store/redis/keys.js';
import { createLiveWriter, type WriteResult } from '../../src/store/redis/live-writer.js';
import { createLiveReader } from '../../src/store/redis/live-reader.js';
import { createSweeper } from '../../src/liveness/sweeper.js';
import { decodeAccepted } from '../../src/store/redis/codec.js';
import { cellOf } from '../../src/geo/tiles.js';
import { createLogger } from '../../src/log/logger.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import type { LivePosition } from '../../src/protocol/live.js';

/**
 * Redis semantics of the writer, reader and sweeper against the real Redis, with the scripts
 * called once per step and batch (single Redis, the default) and once per hash tag
 * (cluster-safe): both must behave alike.
 */
let redis: Redis;
const prefixes: string[] = [];
const Z = 13;
const TTL = 5;

function ping(id: string, lat: number, lon: number, ts: number, extra: Partial<AcceptedPing> = {}): AcceptedPing {
  return { id, lat, lon, ts, tenant: 'acme', cell: cellOf(lon, lat, Z), rx: Date.now(), ...extra };
}

function newKeys(): Keys {
  const prefix = randomKeyPrefix();
  prefixes.push(prefix);
  return createKeys(prefix);
}

before(() => {
  redis = new Redis(testServices().redisUrl);
});

after(async () => {
  for (const prefix of prefixes) {
    const ks = await redis.keys(`${prefix}*`);
    if (ks.length) await redis.del(...ks);
  }
  await redis.quit();
});

for (const clusterSafe of [false, true]) {
  describe(clusterSafe ? 'cluster-safe scripts (one call per hash tag)' : 'one script call per batch (both steps)', () => {
    const keys = newKeys();
    let writer: ReturnType<typeof createLiveWriter>;
    let reader: ReturnType<typeof createLiveReader>;

    before(() => {
      writer = createLiveWriter(redis, keys, { entityTtlSeconds: TTL, streamMaxLen: 10000, maxSpeedMps: 90, jumpSlackMeters: 100, clusterSafe });
      reader = createLiveReader(redis, keys, { ingestZoom: Z, entityTtlSeconds: TTL, maxCells: 2500 });
    });

    async function streamIds(cell: string, id: string): Promise<number[]> {
      const entries = await redis.xrangeBuffer(keys.cell('acme', cell).stream, '-', '+');
      return entries.map(([, f]) => decodeAccepted(f[1]!)).filter((p) => p.id === id).map((p) => p.ts);
    }

    test('a move to another cell leaves the old cell at once; moves carry prev', async () => {
      const t = Date.now();
      const a = ping('m1', 41.15, -8.61, t - 60_000);
      const bSlow = ping('m1', 41.15, -8.56, t - 10_000); // 4.2 km in 50 s = 82 m/s (plausible at 90), next cell east
      assert.notEqual(a.cell, bSlow.cell);
      const r1 = await writer.write([a]);
      assert.deepEqual(r1.outcomes, ['advanced']);
      assert.equal(r1.moves[0]!.prev, undefined);
      const r2 = await writer.write([bSlow]);
      assert.deepEqual(r2.outcomes, ['advanced']);
      assert.deepEqual(r2.moves[0]!.prev, { lat: 41.15, lon: -8.61 });
      assert.equal(r2.moves[0]!.now.lon, -8.56);
      assert.equal(await redis.zscore(keys.cell('acme', a.cell).geo, 'm1'), null);
      assert.equal(await redis.zscore(keys.cell('acme', a.cell).seen, 'm1'), null);
      assert.notEqual(await redis.zscore(keys.cell('acme', bSlow.cell).geo, 'm1'), null);
      const e = await reader.entity('acme', 'm1');
      assert.ok(e && Math.abs(e.lon - -8.56) < 1e-9);
      // Two advances of one entity in one batch: one move, its latest state, from where it was before.
      const c1 = ping('m1', 41.15, -8.5599, t - 8_000);
      const c2 = ping('m1', 41.15, -8.5598, t - 6_000);
      const r3 = await writer.write([c1, c2]);
      assert.deepEqual(r3.outcomes, ['advanced', 'advanced']);
      assert.equal(r3.moves.length, 1);
      assert.deepEqual(r3.moves[0]!.prev, { lat: 41.15, lon: -8.56 });
      assert.equal(r3.moves[0]!.now.ts, c2.ts);
    });

    test('an older ping never moves the entity back but goes to history; duplicates are dropped', async () => {
      const t = Date.now();
      const p1 = ping('o1', 41.15, -8.61, t - 10_000, { seq: 1 });
      const p2 = ping('o1', 41.151, -8.611, t - 5_000, { seq: 2 });
      const late = ping('o1', 41.1505, -8.6105, t - 7_000, { seq: 3 });
      const r = await writer.write([p1, p2]);
      assert.deepEqual(r.outcomes, ['advanced', 'advanced']);
      // One move per entity and batch: the latest state (the entity was not live before: no prev).
      assert.equal(r.moves.length, 1);
      assert.equal(r.moves[0]!.now.ts, p2.ts);
      assert.equal(r.moves[0]!.prev, undefined);
      const r2 = await writer.write([late, { ...p2, rx: Date.now() }]);
      assert.deepEqual(r2.outcomes, ['history', 'duplicate']);
      assert.equal(r2.moves.length, 0);
      const e = await reader.entity('acme', 'o1');
      assert.equal(e?.ts, p2.ts);
      assert.deepEqual((await streamIds(p1.cell, 'o1')).sort(), [p1.ts, late.ts, p2.ts].sort());
      // The same duplicate within one batch, and a retry of p1 later: not streamed twice.
      const r3 = await writer.write([{ ...p1, rx: Date.now() }, { ...p1, rx: Date.now() }]);
      assert.deepEqual(r3.outcomes, ['duplicate', 'duplicate']);
      assert.equal((await streamIds(p1.cell, 'o1')).length, 3);
    });

    test('an implausible jump is kept out of live state and history; a consistent next fix re-anchors', async () => {
      const t = Date.now();
      const home = ping('j1', 41.15, -8.61, t - 20_000);
      const madrid = ping('j1', 40.4168, -3.7038, t - 19_000);
      const next = ping('j1', 41.1501, -8.6101, t - 18_000);
      const r = await writer.write([home, madrid, next]);
      assert.deepEqual(r.outcomes, ['advanced', 'implausible', 'advanced']);
      assert.deepEqual(await streamIds(madrid.cell, 'j1'), []);
      const e = await reader.entity('acme', 'j1');
      assert.ok(e && Math.abs(e.lat - 41.1501) < 1e-9);
      // A real relocation (first fix was wrong): two consistent fixes far away re-anchor.
      const far1 = ping('j1', 40.4168, -3.7038, t - 10_000);
      const far2 = ping('j1', 40.4169, -3.7039, t - 9_000);
      const r2 = await writer.write([far1]);
      assert.deepEqual(r2.outcomes, ['implausible']);
      const r3 = await writer.write([far2]);
      assert.deepEqual(r3.outcomes, ['advanced']);
      assert.equal(await redis.zscore(keys.cell('acme', next.cell).geo, 'j1'), null, 'left the old cell');
    });

    test('nearby and within: live only, sorted, kind/status filters, other tenants invisible', async () => {
      const t = Date.now();
      await writer.write([
        ping('n1', 10.0, 20.0, t, { kind: 'car', status: 'available' }),
        ping('n2', 10.001, 20.0, t, { kind: 'bike', status: 'available' }),
        ping('n3', 10.002, 20.0, t, { kind: 'car', status: 'on_trip' }),
        { ...ping('n4', 10.0005, 20.0, t), tenant: 'other' },
      ]);
      const all = await reader.nearby({ tenant: 'acme', lat: 10, lon: 20, radius: 1000, limit: 10 });
      assert.deepEqual(all.map((h) => h.id), ['n1', 'n2', 'n3']);
      assert.equal(all[1]!.kind, 'bike');
      const cars = await reader.nearby({ tenant: 'acme', lat: 10, lon: 20, radius: 1000, limit: 10, kind: 'car', status: 'available' });
      assert.deepEqual(cars.map((h) => h.id), ['n1']);
      const w = await reader.within({ tenant: 'acme', bbox: [19.99, 9.99, 20.01, 10.0015], limit: 10 });
      assert.deepEqual(w.results.map((h) => h.id), ['n1', 'n2']);
      const other = await reader.nearby({ tenant: 'other', lat: 10, lon: 20, radius: 1000, limit: 10 });
      assert.deepEqual(other.map((h) => h.id), ['n4']);
    });

    test('staleness: expired entities are absent from queries; the sweeper removes and reports them once', async () => {
      const old = Date.now() - (TTL + 1) * 1000;
      await writer.write([ping('s1', -33.86, 151.2, old, { rx: old }), ping('s2', -33.861, 151.2, Date.now())]);
      const hits = await reader.nearby({ tenant: 'acme', lat: -33.86, lon: 151.2, radius: 500, limit: 10 });
      assert.deepEqual(hits.map((h) => h.id), ['s2']);
      assert.equal(await reader.entity('acme', 's1'), undefined);
      const log = createLogger({ log: { level: 'silent', pretty: false }, env: 'test', instanceId: 't' } as never, 'gateway');
      const reported: LivePosition[] = [];
      const sweepers = [0, 1].map(() => createSweeper(redis, keys, { entityTtlSeconds: TTL, intervalMs: 1000, maxCells: 100, batch: 100 }, (g) => reported.push(...g), log));
      await Promise.all(sweepers.map((s) => s.sweepOnce()));
      assert.deepEqual(reported.filter((g) => g.id === 's1').length, 1, 'reported exactly once across two sweepers');
      const cell = cellOf(151.2, -33.86, Z);
      assert.equal(await redis.zscore(keys.cell('acme', cell).geo, 's1'), null);
      assert.notEqual(await redis.zscore(keys.cell('acme', cell).geo, 's2'), null);
    });
  });
}

test('sweeper: cells that went silent are swept before they leave the window, however long the walk through the active cells', async () => {
  const keys = newKeys();
  const writer = createLiveWriter(redis, keys, { entityTtlSeconds: TTL, streamMaxLen: 1000, maxSpeedMps: 90, jumpSlackMeters: 100 });
  const log = createLogger({ log: { level: 'silent', pretty: false }, env: 'test', instanceId: 't' } as never, 'gateway');
  const reported: LivePosition[] = [];
  // 6 cells per tick, horizon 60 s (intervalMs 1000): a silent cell stays in the window 60 s.
  const sweeper = createSweeper(redis, keys, { entityTtlSeconds: TTL, intervalMs: 1000, maxCells: 6, batch: 100 }, (g) => reported.push(...g), log);
  const t = Date.now();
  // 30 cells that will go silent (one entity each), 90 cells that stay live (later last pings).
  const cellAt = (i: number): [number, number] => [-30 + Math.floor(i / 20) * 0.2, 100 + (i % 20) * 0.2];
  await writer.write(Array.from({ length: 30 }, (_, i) => ping(`quiet-${i}`, ...cellAt(i), t, { rx: t })));
  await writer.write(Array.from({ length: 90 }, (_, i) => ping(`busy-${i}`, ...cellAt(100 + i), t, { rx: t + 600_000 })));
  // While everything is live, the walk passes the 30 and goes on into the 90.
  for (let k = 0; k < 6; k++) await sweeper.sweepOnce(t + 1000);
  // Now the 30 are silent; 5 s per tick, they leave the window after 12 ticks; the walk needs 15
  // more to come round.
  for (let k = 0; k < 12; k++) await sweeper.sweepOnce(t + (TTL + 1) * 1000 + k * 5000);
  const gone = new Set(reported.map((g) => g.id));
  assert.deepEqual(Array.from({ length: 30 }, (_, i) => `quiet-${i}`).filter((id) => !gone.has(id)), []);
  assert.equal([...gone].filter((id) => id.startsWith('busy-')).length, 0);
});

test('one call per batch and calls per hash tag give the same outcomes, moves and Redis state (two tenants, same ids, thousands of entities)', async () => {
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const t = Date.now() - 60_000;
  const N = 1300;
  const at = (tenant: string, id: string, lat: number, lon: number, ts: number, seq: number): AcceptedPing =>
    ({ ...ping(id, lat, lon, ts, { seq }), tenant, rx: t });
  // 2,600 entities (ids repeat across the two tenants) over ≈ 100 cells: more entities than one script call takes.
  const base = Array.from({ length: N }, () => [41.0 + rand() * 0.4, -8.9 + rand() * 0.4] as const);
  const round1 = ['acme', 'beta'].flatMap((tenant) => base.map(([lat, lon], i) => at(tenant, `e${i}`, lat, lon, t, 1)));
  const round2: AcceptedPing[] = [];
  for (const p of round1) {
    const r = rand();
    if (r < 0.1) round2.push({ ...p }); // a retry: duplicate
    else if (r < 0.2) round2.push(at(p.tenant, p.id, p.lat + 0.001, p.lon, t - 1000, 0)); // older: history only
    else if (r < 0.25) round2.push(at(p.tenant, p.id, p.lat + 5, p.lon, t + 2000, 2)); // 550 km in 2 s: implausible
    else round2.push(at(p.tenant, p.id, p.lat + (rand() - 0.5) * 0.02, p.lon + (rand() - 0.5) * 0.02, t + 20_000, 2)); // a move (some leave their cell)
  }
  const results = await Promise.all([false, true].map(async (clusterSafe) => {
    const keys = newKeys();
    const w = createLiveWriter(redis, keys, { entityTtlSeconds: 300, streamMaxLen: 100_000, maxSpeedMps: 90, jumpSlackMeters: 100, clusterSafe });
    const out: WriteResult[] = [await w.write(round1)];
    for (let i = 0; i < round2.length; i += 700) out.push(await w.write(round2.slice(i, i + 700)));
    return { keys, out };
  }));
  const [one, perTag] = results as [typeof results[0], typeof results[0]];
  const outcomes = (r: typeof one): string[] => r.out.flatMap((x) => x.outcomes);
  assert.deepEqual(outcomes(one), outcomes(perTag));
  const counts = outcomes(one).reduce<Record<string, number>>((a, o) => ({ ...a, [o]: (a[o] ?? 0) + 1 }), {});
  for (const o of ['advanced', 'history', 'duplicate', 'implausible']) assert.ok((counts[o] ?? 0) > 50, `${o}: ${counts[o]}`);
  const moves = (r: typeof one): string[] => r.out.flatMap((x) => x.moves.map((m) => JSON.stringify([m.now.tenant, m.now.id, m.now.ts, m.now.lat, m.now.lon, m.prev]))).sort();
  assert.deepEqual(moves(one), moves(perTag));
  // Every cell: the same live members and positions, the same streamed pings.
  const cells = new Set(round1.concat(round2).map((p) => `${p.tenant}|${p.cell}`));
  const state = async (keys: Keys): Promise<string[]> => {
    const rows: string[] = [];
    for (const c of cells) {
      const [tenant, cell] = c.split('|') as [string, string];
      const ck = keys.cell(tenant, cell);
      const geo = await redis.zrange(ck.geo, 0, -1, 'WITHSCORES');
      const seen = await redis.zrange(ck.seen, 0, -1);
      const streamed = (await redis.xrangeBuffer(ck.stream, '-', '+')).map(([, f]) => { const p = decodeAccepted(f[1]!); return `${p.id}@${p.ts}`; }).sort();
      rows.push(`${c} geo=${geo.join(',')} seen=${seen.join(',')} stream=${streamed.join(',')}`);
    }
    return rows;
  };
  const [a, b] = await Promise.all([state(one.keys), state(perTag.keys)]);
  assert.deepEqual(a, b);
  // The same active cells (what workers and the sweeper walk): every cell that got a ping into
  // its stream (a cell an entity left had got its earlier ping), and no other.
  const active = async (keys: Keys): Promise<string[]> => (await redis.zrange(keys.activeCells, 0, -1)).sort();
  const [actOne, actPerTag] = await Promise.all([active(one.keys), active(perTag.keys)]);
  assert.deepEqual(actOne, actPerTag);
  const all = round1.concat(round2);
  const streamed = new Set(outcomes(one).flatMap((o, i) => (o === 'advanced' || o === 'history' ? [`${all[i]!.tenant}|${all[i]!.cell}`] : [])));
  assert.deepEqual(actOne, [...streamed].sort());
  assert.ok(a.filter((r) => !r.includes('geo= ')).length > 50, 'cells with live members');
});

/** The last `bytes` of the Redis AOF being appended now (the newest incr file), or undefined when AOF is off. */
async function aofTail(bytes = 4 << 20): Promise<string | undefined> {
  const [, on] = await redis.config('GET', 'appendonly') as [string, string];
  if (on !== 'yes') return undefined;
  const [, dir] = await redis.config('GET', 'dir') as [string, string];
  const [, sub] = await redis.config('GET', 'appenddirname') as [string, string];
  const folder = join(dir, sub);
  const seqOf = (f: string): number => Number(/\.(\d+)\.incr\.aof$/.exec(f)?.[1] ?? -1);
  const newest = readdirSync(folder).filter((f) => seqOf(f) >= 0).sort((a, b) => seqOf(b) - seqOf(a))[0];
  if (!newest) return undefined;
  const file = join(folder, newest);
  const size = statSync(file).size;
  const n = Math.min(size, bytes);
  const buf = Buffer.alloc(n);
  const fd = openSync(file, 'r');
  try { readSync(fd, buf, 0, n, size - n); } finally { closeSync(fd); }
  return buf.toString('latin1');
}

test('entity state goes to the AOF only with entityStateInAof; the pings always do', async (t) => {
  if ((await aofTail(1)) === undefined) return t.skip('the test Redis runs without AOF');
  for (const entityStateInAof of [false, true]) {
    const keys = newKeys();
    const w = createLiveWriter(redis, keys, { entityTtlSeconds: TTL, streamMaxLen: 1000, maxSpeedMps: 90, jumpSlackMeters: 100, entityStateInAof });
    const id = `aof-${entityStateInAof}-${Date.now()}`;
    const p = ping(id, 41.15, -8.61, Date.now());
    assert.deepEqual((await w.write([p])).outcomes, ['advanced']);
    assert.ok(await redis.exists(keys.entity('acme', id)), 'the entity state is in Redis');
    // Redis may hold the AOF write back while a background fsync runs (up to 2 s): wait for the
    // cell step (written after the entity step, so everything before it is in the file too).
    const stream = keys.cell('acme', p.cell).stream;
    const aof = await waitFor(async () => { const a = (await aofTail())!; return a.includes(stream) ? a : undefined; }, 5000, 'the stream entry in the AOF');
    assert.ok(aof.includes(keys.cell('acme', p.cell).geo), 'the GEO entry is in the AOF');
    assert.equal(aof.includes(keys.entity('acme', id)), entityStateInAof, `entity key in the AOF: ${!entityStateInAof ? 'not ' : ''}expected`);
  }
});
