import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { pino } from 'pino';
import { createTestDatabase } from '../helpers/services.js';
import { migrate } from '../../src/store/pg/migrate.js';

/**
 * The migrations with the pg_partman installed here. 001/002 call partman.create_parent with
 * 4.x's arguments (p_type 'native', interval 'daily') or 5.x's ('range', '1 day') after the
 * extension's version; this machine has 4.x (Debian 12), so only that branch runs here.
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
const log = pino({ level: 'silent' });
const PARENTS = ['public.cell_stats', 'public.cell_window_entities', 'public.ping_log', 'public.positions', 'public.track_windows'];

before(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
});
after(async () => {
  await pool.end();
  await db.drop();
});

test('every partitioned table becomes a daily pg_partman set, partitions made 7 days ahead; a second run applies nothing', async () => {
  const applied = await migrate(pool, log);
  assert.ok(applied.includes('001_init') && applied.includes('002_persistence'), applied.join(', '));

  const major = Number((await pool.query<{ v: string }>(`SELECT split_part(extversion, '.', 1) AS v FROM pg_extension WHERE extname = 'pg_partman'`)).rows[0]!.v);
  const cfg = (await pool.query<{ parent_table: string; partition_type: string; partition_interval: string; premake: number }>(
    'SELECT parent_table, partition_type, partition_interval, premake FROM partman.part_config ORDER BY parent_table')).rows;
  assert.deepEqual(cfg.map((r) => r.parent_table), PARENTS);
  for (const r of cfg) {
    assert.equal(r.partition_type, major >= 5 ? 'range' : 'native', `${r.parent_table}: type for pg_partman ${major}`);
    assert.equal(r.partition_interval, '1 day', `${r.parent_table}: daily`);
    assert.equal(r.premake, 7);
    for (const days of [-1, 0, 7]) {
      const p = (await pool.query<{ partition_table: string; table_exists: boolean }>(
        `SELECT partition_table, table_exists FROM partman.show_partition_name($1, (now() + make_interval(days => $2))::text)`, [r.parent_table, days])).rows[0]!;
      assert.ok(p.table_exists, `${r.parent_table}: partition ${p.partition_table} (${days} days from now) exists`);
    }
  }

  // Applied migrations are recorded by name (no checksum) and never run again.
  assert.deepEqual(await migrate(pool, log), []);
});
