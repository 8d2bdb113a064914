import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { createTestDatabase } from '../helpers/services.js';
import { migrate, migrationsDir } from '../../src/store/pg/migrate.js';
import { cellOf } from '../../src/geo/tiles.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';
import { toStaged } from '../../workers/entry.js';
import { writeBatch, type WriteResult } from '../../workers/pg-writer.js';
import { WIN, expectedPositions, expectedCells, uniquePings, readPositions, readCells, assertRowsMatch, ledgerKeys } from './worker-model.js';

/**
 * Window mode's exactly-once record, the ledger of keys on each track_windows row (migration
 * 004), flush by flush: writeBatch called directly, so that the flush boundaries, the
 * redeliveries and the interleaving of two transactions are exactly those of the test.
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let client: pg.Client;
const silent = pino({ level: 'silent' });

before(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  await migrate(pool, silent);
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
after(async () => {
  await client.end();
  await pool.end();
  await db.drop();
});

async function flush(pings: readonly AcceptedPing[], c?: pg.PoolClient): Promise<WriteResult> {
  const conn = c ?? await pool.connect();
  try {
    if (!c) await conn.query('BEGIN');
    const res = await writeBatch(conn, pings.map(toStaged), 'window');
    if (!c) await conn.query('COMMIT');
    return res;
  } finally {
    if (!c) conn.release();
  }
}

async function assertModel(all: readonly AcceptedPing[], what: string): Promise<void> {
  assertRowsMatch(await readPositions(client), expectedPositions(all, 'window'), ['speed', 'mean_speed'], `positions (${what})`);
  assertRowsMatch(await readCells(client), expectedCells(all), ['mean_speed', 'max_speed'], `cell_stats (${what})`);
  assert.equal(await ledgerKeys(client), uniquePings(all).length, `ledger keys (${what})`);
}

async function reset(): Promise<void> {
  await client.query('TRUNCATE positions, cell_stats, track_windows, cell_window_entities, ping_log');
}

/** One entity, `n` pings 400 ms apart from `t0` (several windows); `hop`: alternates between two cells. */
function track(id: string, t0: number, n: number, hop = false): AcceptedPing[] {
  const out: AcceptedPing[] = [];
  for (let s = 1; s <= n; s++) {
    const lat = hop && s % 2 === 0 ? 41.20 : 41.15 + s * 1e-5, lon = -8.61 + s * 1e-5;
    const p: AcceptedPing = { tenant: 'acme', id, ts: t0 + s * 400, seq: s, lat, lon, rx: t0, cell: cellOf(lon, lat, 13), status: 'available' };
    if (s % 4 !== 0) p.speed = (s * 7) % 31 + 0.25;
    out.push(p);
  }
  return out;
}

const t0 = (): number => Math.floor((Date.now() - 30 * 60_000) / WIN) * WIN;

test('a window straddling two flushes, the second redelivering part of the first: each ping counted once', async () => {
  await reset();
  const base = t0();
  // 20 pings in one window for car-1 (8 s); mover-2 hops between two cells in the same window.
  const car = track('car-1', base, 20), mover = track('mover-2', base + 50, 20, true);
  const all = [...car, ...mover];
  const a = await flush([...car.slice(0, 12), ...mover.slice(0, 12)]);
  assert.equal(a.fresh, 24);
  await assertModel([...car.slice(0, 12), ...mover.slice(0, 12)], 'first flush');
  // Redelivery (XAUTOCLAIM after a crash) of pings 8–12 with the rest of the window, out of order.
  const b = await flush([...car.slice(7).reverse(), ...mover.slice(7)]);
  assert.equal(b.fresh, 16, 'only the 8 pings of each entity not counted before are fresh');
  assert.ok('ledger' in b.steps, `the batch reaches below the windows' greatest key: checked key by key (${JSON.stringify(b.steps)})`);
  await assertModel(all, 'second flush');
  // A third flush of the same keys again changes nothing.
  const before = JSON.stringify([await readPositions(client), await readCells(client)]);
  assert.equal((await flush(all)).fresh, 0);
  assert.equal(JSON.stringify([await readPositions(client), await readCells(client)]), before);
});

test('a duplicate key in a later flush after its window row exists; a late older ping still counts', async () => {
  await reset();
  const base = t0();
  const car = track('car-3', base, 30); // 12 s: two windows
  const late = car[2]!, dup = car[5]!;
  const first = car.filter((p) => p !== late);
  assert.equal((await flush(first)).fresh, first.length);
  await assertModel(first, 'first flush');
  const rows = JSON.stringify(await readPositions(client));
  // The duplicate alone: nothing fresh, nothing written.
  assert.deepEqual((await flush([dup])).fresh, 0);
  assert.equal(JSON.stringify(await readPositions(client)), rows);
  await assertModel(first, 'duplicate alone');
  // The duplicate again with a late ping older than the window's latest fix: counted, row kept.
  assert.equal((await flush([{ ...dup, speed: 99 }, late])).fresh, 1, 'a key IS a ping: the duplicate is not counted, whatever its content');
  await assertModel(car, 'late ping');
  // A ping of the same window newer than its latest fix replaces the row.
  const newer: AcceptedPing = { ...car[23]!, ts: car[23]!.ts + 100, seq: 1000, lat: 41.3 };
  newer.cell = cellOf(newer.lon, newer.lat, 13);
  assert.equal((await flush([newer, car[23]!])).fresh, 1);
  await assertModel([...car, newer], 'newer ping');
});

test('two transactions on the same new window: the second waits, then counts only what the first did not', async () => {
  await reset();
  const base = t0();
  const car = track('car-4', base, 24); // 9.6 s: one window
  const c1 = await pool.connect(), c2 = await pool.connect();
  try {
    await c1.query('BEGIN');
    await c2.query('BEGIN');
    assert.equal((await flush(car.slice(0, 16), c1)).fresh, 16);
    // c2 holds pings 10–24: its insert of the window waits for c1's uncommitted row.
    let done = false;
    const second = flush(car.slice(9), c2).then((r) => { done = true; return r; });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(done, false, 'the second transaction waits for the first');
    await c1.query('COMMIT');
    const r2 = await second;
    assert.equal(r2.fresh, 8, 'pings 17–24');
    await c2.query('COMMIT');
  } finally {
    c1.release();
    c2.release();
  }
  await assertModel(car, 'two transactions');
});

test('migration 004 moves the keys of windows written before it from ping_log into their ledger', async () => {
  const old = await createTestDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'gf-mig-'));
  const p = new pg.Pool({ connectionString: old.url, max: 2 });
  try {
    for (const f of ['001_init.sql', '002_persistence.sql', '003_track_windows_prev.sql']) cpSync(join(migrationsDir(), f), join(dir, f));
    await migrate(p, silent, dir);
    // What the previous worker wrote for one window: its state and a ping_log row per ping.
    const base = t0();
    const win = new Date(base).toISOString();
    await p.query(`INSERT INTO track_windows (tenant, entity_id, win, ping_count, speed_sum, speed_n, last_ts, last_seq)
      VALUES ('acme', 'old-1', $1, 3, 3, 3, $2, 7)`, [win, new Date(base + 9_999).toISOString()]);
    await p.query(`INSERT INTO ping_log (tenant, entity_id, ts, seq) VALUES
      ('acme', 'old-1', $1, -1), ('acme', 'old-1', $2, 5), ('acme', 'old-1', $3, 7),
      ('acme', 'old-1', $4, 1)`, [new Date(base).toISOString(), new Date(base + 1_234).toISOString(), new Date(base + 9_999).toISOString(),
      new Date(base + 10_000).toISOString()]); // the last one: next window, which has no state (not window mode's)
    assert.deepEqual(await migrate(p, silent), ['004_window_ledger']);
    const r = await p.query(`SELECT key_off, key_seq FROM track_windows WHERE entity_id = 'old-1'`);
    assert.deepEqual(r.rows[0].key_off, [0, 1234, 9999]);
    assert.deepEqual(r.rows[0].key_seq.map(Number), [-1, 5, 7]);
  } finally {
    await p.end();
    rmSync(dir, { recursive: true, force: true });
    await old.drop();
  }
});
