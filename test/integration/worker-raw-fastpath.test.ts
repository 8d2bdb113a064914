import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { pino } from 'pino';
import { createTestDatabase } from '../helpers/services.js';
import { migrate } from '../../src/store/pg/migrate.js';
import { cellOf } from '../../src/geo/tiles.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { toStaged } from '../../workers/entry.js';
import { writeBatch, numericParts, DecimalSum, type WriteResult } from '../../workers/pg-writer.js';
import { WIN, expectedPositions, expectedCells, readPositions, readCells, assertRowsMatch } from './worker-model.js';

/**
 * Raw mode's fast path (a direct COPY into positions under a savepoint, cell aggregates from
 * the batch) against the staged path it falls back to: the same batches written both ways into
 * two databases give the same rows, byte for byte (geometry as EWKB, reals, numeric scales,
 * ping_log, cell_window_entities); a fast path that fails mid-way leaves nothing behind.
 */
interface Db { drop(): Promise<void>; pool: pg.Pool; client: pg.Client }
let fast: Db, staged: Db;
const silent = pino({ level: 'silent' });

async function open(): Promise<Db> {
  const db = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  await migrate(pool, silent);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  return { pool, client, async drop() { await client.end(); await pool.end(); await db.drop(); } };
}

before(async () => { fast = await open(); staged = await open(); });
after(async () => { await fast.drop(); await staged.drop(); });

async function flush(d: Db, pings: readonly AcceptedPing[], rawFastPath: boolean, c?: pg.PoolClient): Promise<WriteResult> {
  const conn = c ?? await d.pool.connect();
  try {
    if (!c) await conn.query('BEGIN');
    const res = await writeBatch(conn, pings.map(toStaged), 'raw', { rawFastPath });
    if (!c) await conn.query('COMMIT');
    return res;
  } catch (err) {
    if (!c) await conn.query('ROLLBACK');
    throw err;
  } finally {
    if (!c) conn.release();
  }
}

/** The same batch both ways: same counts; returns the fast path's result (its steps tell the path taken). */
async function both(pings: readonly AcceptedPing[]): Promise<WriteResult> {
  const f = await flush(fast, pings, true), s = await flush(staged, pings, false);
  assert.ok(!('fast' in s.steps), 'the staged database never takes the fast path');
  assert.deepEqual([f.fresh, f.positions, f.cellStats], [s.fresh, s.positions, s.cellStats], `counts (${JSON.stringify(f.steps)})`);
  return f;
}

/** Every row raw mode writes, as PostgreSQL prints it (geometry as hex EWKB, reals, numerics with their scale). */
async function dump(c: pg.Client): Promise<Record<string, string[]>> {
  const rows = async (sql: string): Promise<string[]> => (await c.query<{ r: string }>(sql)).rows.map((x) => x.r);
  return {
    positions: await rows('SELECT t::text AS r FROM positions t ORDER BY tenant COLLATE "C", entity_id COLLATE "C", ts'),
    cell_stats: await rows('SELECT t::text AS r FROM cell_stats t ORDER BY tenant COLLATE "C", cell COLLATE "C", win'),
    cell_window_entities: await rows('SELECT t::text AS r FROM cell_window_entities t ORDER BY 1'),
    ping_log: await rows('SELECT t::text AS r FROM ping_log t ORDER BY 1'),
  };
}

async function assertSame(all: readonly AcceptedPing[], what: string): Promise<void> {
  const f = await dump(fast.client), s = await dump(staged.client);
  for (const table of Object.keys(s)) assert.deepEqual(f[table], s[table], `${table} (${what})`);
  assertRowsMatch(await readPositions(fast.client), expectedPositions(all, 'raw'), ['speed', 'mean_speed'], `positions (${what})`);
  assertRowsMatch(await readCells(fast.client), expectedCells(all), ['mean_speed', 'max_speed'], `cell_stats (${what})`);
}

async function reset(): Promise<void> {
  for (const d of [fast, staged]) await d.client.query('TRUNCATE positions, cell_stats, track_windows, cell_window_entities, ping_log');
}

const t0 = (): number => Math.floor((Date.now() - 30 * 60_000) / WIN) * WIN;

/**
 * `entities` entities, `n` pings each 700 ms apart (several windows, hopping between cells),
 * with the values that are easy to get wrong: no speed, no seq, -0, a float4 rounding tie
 * (1 + 2^-24: float8 → real rounds to even, a decimal text read straight as real would not),
 * escapes in text, 0 and negative coordinates.
 */
function fleet(prefix: string, entities: number, n: number, base: number): AcceptedPing[] {
  const out: AcceptedPing[] = [];
  for (let e = 0; e < entities; e++) {
    for (let s = 1; s <= n; s++) {
      const lat = e === 0 ? (s % 2 === 0 ? -0 : 0) : 41.15 + ((s + e) % 3) * 0.04 + s * 1e-6, lon = e === 0 ? -0 : -8.61 - (e % 2) * 0.05 + s * 1e-6;
      const p: AcceptedPing = { tenant: e % 4 === 3 ? 'beta' : 'acme', id: `${prefix}-${e}`, ts: base + s * 700 + e, lat, lon, rx: base, cell: cellOf(lon, lat, 13) };
      if (s % 5 !== 0) p.seq = s;
      if (s % 4 !== 0) p.speed = s % 7 === 0 ? -0 : s % 6 === 0 ? 1 + 2 ** -24 : (s * 7.3 + e) % 31 + 0.1;
      if (e === 1 && s === 3) p.speed = 1e-7; // float8::numeric left to SQL (exponent form): its cell window is summed there
      if (e === 2 && s === 5) p.lon = 100.0001220703125; // an exact tie at 15 digits: likewise
      if (s % 3 === 0) p.heading = (s * 37) % 360 + 0.5;
      if (s % 2 === 0) p.accuracy = 3.3333333333;
      if (s % 3 === 1) p.status = s % 2 ? 'avail\table\\x' : 'busy';
      if (e % 2 === 0) p.kind = 'car';
      out.push(p);
    }
  }
  return out;
}

test('every ping new: the fast path writes exactly what the staged path writes, flush after flush', async () => {
  await reset();
  const all = fleet('fp', 12, 40, t0());
  const sorted = [...all].sort((a, b) => a.ts - b.ts);
  // Three flushes in time order: windows and cell windows straddle them.
  for (let i = 0; i < 3; i++) {
    const part = sorted.slice((i * sorted.length) / 3, ((i + 1) * sorted.length) / 3);
    const r = await both(part.reverse());
    assert.ok('fast' in r.steps && !('raw' in r.steps), `all new: fast path (${JSON.stringify(r.steps)})`);
    assert.equal(r.fresh, part.length);
  }
  await assertSame(all, 'three flushes');
  // The same pings in one batch into an empty database (other cell-window splits): same rows.
  await reset();
  assert.ok('fast' in (await both([...all, ...all.slice(0, 50)])).steps, 'duplicate entries in the batch: the key is kept once, still all new');
  await assertSame(all, 'one flush');
});

test('a fast path that fails mid-way (a persisted key, a ping sharing a persisted ts) falls back: same rows, nothing of the attempt left', async () => {
  await reset();
  const all = fleet('mid', 10, 30, t0());
  const first = all.filter((_, i) => i % 3 === 0);
  assert.equal((await both(first)).fresh, first.length);
  // The rest, with a redelivered key in the middle of the batch's key order (entity mid-5) and
  // a new ping sharing the ts of a persisted one (another seq: shares its row).
  const mid5 = first.filter((p) => p.id === 'mid-5');
  const shared: AcceptedPing = { ...mid5[4]!, seq: 900, speed: 2.5, lat: mid5[4]!.lat + 1e-5 };
  shared.cell = cellOf(shared.lon, shared.lat, 13);
  const rest = [...all.filter((_, i) => i % 3 !== 0), mid5[2]!, shared];
  const r = await both(rest);
  assert.ok('fast' in r.steps && 'raw' in r.steps && 'conflicts' in r.steps, `fell back to the staged path (${JSON.stringify(r.steps)})`);
  assert.equal(r.fresh, rest.length - 1, 'every ping but the redelivered one is fresh');
  await assertSame([...all, shared], 'after the fallback');
  const n = Number((await fast.client.query('SELECT count(*) AS n FROM positions')).rows[0].n);
  assert.equal(n, new Set([...all, shared].map((p) => `${p.tenant}|${p.id}|${p.ts}`)).size, 'one row per key, none left twice by the attempt');
  // Replayed again: nothing fresh, no row changes (ping_log records the keys that conflicted, on both paths).
  const { positions, cell_stats } = await dump(fast.client);
  assert.equal((await both([...rest, ...first])).fresh, 0);
  await assertSame([...all, shared], 'after a replay');
  assert.deepEqual([(await dump(fast.client)).positions, (await dump(fast.client)).cell_stats], [positions, cell_stats]);
});

test('two pings of one batch sharing a ts: straight to the staged path, same rows', async () => {
  await reset();
  const all = fleet('ts', 4, 20, t0());
  const twin: AcceptedPing = { ...all[7]!, seq: 77, speed: 4 };
  const r = await both([...all, twin]);
  assert.ok(!('fast' in r.steps) && 'raw' in r.steps, `no fast attempt (${JSON.stringify(r.steps)})`);
  await assertSame([...all, twin], 'shared ts in one batch');
});

test('a concurrent transaction inserting the same keys: the fast COPY waits, then falls back; exactly once', async () => {
  await reset();
  const all = fleet('cc', 6, 30, t0());
  const x = all.filter((_, i) => i % 2 === 0), y = all.filter((_, i) => i % 4 !== 0); // y holds half of x
  const c1 = await fast.pool.connect(), c2 = await fast.pool.connect();
  try {
    await c1.query('BEGIN');
    await c2.query('BEGIN');
    assert.ok('fast' in (await flush(fast, x, true, c1)).steps);
    let done = false;
    const second = flush(fast, y, true, c2).then((r) => { done = true; return r; });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(done, false, 'the second COPY waits for the first transaction');
    await c1.query('COMMIT');
    const r2 = await second;
    assert.ok('raw' in r2.steps, `fell back (${JSON.stringify(r2.steps)})`);
    assert.equal(r2.fresh, all.length - x.length);
    await c2.query('COMMIT');
  } finally {
    c1.release();
    c2.release();
  }
  // The staged path, one batch after the other, on the other database.
  await flush(staged, x, false);
  await flush(staged, y, false);
  await assertSame(all, 'two transactions');
});

test('a real the database refuses (float4 overflow) fails the same way on both paths', async () => {
  await reset();
  const bad: AcceptedPing = { ...fleet('bad', 1, 1, t0())[0]!, heading: 1e39 };
  for (const fastPath of [true, false]) {
    await assert.rejects(flush(fast, [bad], fastPath), (err: { code?: string }) => err.code === '22003');
  }
  assert.equal(Number((await fast.client.query('SELECT count(*) AS n FROM positions')).rows[0].n), 0);
});

test('numericParts and DecimalSum reproduce float8::numeric and sum(float8::numeric) exactly, scale included', async () => {
  let seed = 7;
  const rnd = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
  const values: number[] = [0, -0, 0.5, -0.5, 1, 7.4, 12, 123000, 1 + 2 ** -24, 1 + 2 ** -52, 9.9999999999999995, 0.1 + 0.2,
    100.0001220703125, -100.0001220703125, 0.00001234, 0.000001, 1e-7, 1e15, 123456789012345, 1234567890123455, 1e20, 1e21, 2 ** 53];
  for (let i = 0; i < 3000; i++) {
    const mag = 10 ** Math.floor(rnd() * 22 - 7);
    const v = (rnd() - 0.3) * mag;
    values.push(v, Math.round(v * 1e6) / 1e6, Number(v.toPrecision(1 + Math.floor(rnd() * 17))));
  }
  // one by one: value and scale (numeric prints its scale)
  const pgText = (await fast.client.query<{ t: string }>('SELECT x::numeric::text AS t FROM unnest($1::float8[]) WITH ORDINALITY u(x, i) ORDER BY i',
    [values.map(String)])).rows.map((r) => r.t);
  let converted = 0;
  values.forEach((v, i) => {
    const parts = numericParts(v);
    if (!parts) return;
    converted++;
    const one = new DecimalSum();
    one.add(parts);
    assert.equal(one.text(), pgText[i], `float8::numeric of ${v}`);
  });
  assert.ok(converted > values.length * 0.8, `most values convert in JS (${converted} of ${values.length})`);
  assert.equal(numericParts(100.0001220703125), undefined, 'an exact tie at 15 digits is left to SQL (printf rounds it to even)');
  assert.equal(numericParts(1e-7), undefined);
  // sums of many terms of mixed scales and signs
  for (let k = 0; k < 20; k++) {
    const terms = values.filter((v) => numericParts(v) && Math.abs(v) < 10 ** (3 + k) && rnd() < 0.5);
    const sum = new DecimalSum();
    for (const v of terms) sum.add(numericParts(v)!);
    const want = (await fast.client.query<{ t: string | null }>('SELECT sum(x::numeric)::text AS t FROM unnest($1::float8[]) x', [terms.map(String)])).rows[0]!.t;
    assert.equal(sum.text() ?? null, want, `sum of ${terms.length} terms`);
  }
});
