import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { pino } from 'pino';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startWorker, type Child } from '../helpers/processes.js';
import { migrate } from '../../src/store/pg/migrate.js';
import { waitFor } from './worker-model.js';

/**
 * pg_partman maintenance run by the worker: partitions are created PARTITION_PREMAKE_DAYS
 * ahead, partitions older than RETENTION_DAYS (history) / DEDUP_RETENTION_DAYS (dedup
 * state) are dropped, every partition (including those made by maintenance) carries the
 * GiST / BRIN / unique indexes, and only one worker at a time runs it (advisory lock).
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let worker: Child | undefined;
/** Child-name suffix separator: pg_partman 4.x names a daily partition `_p2026_12_06`, 5.x `_p20261206`. */
let sep = '_';

before(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
  await migrate(pool, pino({ level: 'silent' }));
  const major = Number((await pool.query<{ v: string }>(`SELECT split_part(extversion, '.', 1) AS v FROM pg_extension WHERE extname = 'pg_partman'`)).rows[0]!.v);
  if (major >= 5) sep = '';
});
after(async () => {
  await worker?.stop();
  await pool.end();
  await db.drop();
});

const partitions = async (parent: string): Promise<string[]> =>
  (await pool.query<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = $1::regclass ORDER BY 1`, [parent])).rows.map((r) => r.name);
const dayName = (parent: string, offsetDays: number): string => {
  const d = new Date(Date.now() + offsetDays * 86_400_000);
  return `${parent}_p${d.getUTCFullYear()}${sep}${String(d.getUTCMonth() + 1).padStart(2, '0')}${sep}${String(d.getUTCDate()).padStart(2, '0')}`;
};
const indexDefs = async (table: string): Promise<string[]> =>
  (await pool.query<{ def: string }>('SELECT indexdef AS def FROM pg_indexes WHERE tablename = $1', [table])).rows.map((r) => r.def);

test('maintenance premakes, drops expired partitions, keeps indexes, one worker at a time', async () => {
  // Old partitions (as if the system had been running for weeks), with a row in one of them.
  for (const t of ['public.positions', 'public.cell_stats', 'public.ping_log', 'public.track_windows', 'public.cell_window_entities']) {
    await pool.query(`SELECT partman.create_partition_time($1, ARRAY[now() - interval '20 days', now() - interval '4 days']::timestamptz[])`, [t]);
  }
  await pool.query(`INSERT INTO positions (tenant, entity_id, ts, geom, cell) VALUES ('acme', 'old', now() - interval '20 days', ST_SetSRID(ST_MakePoint(1, 2), 4326), '13/1/1')`);
  assert.ok((await partitions('positions')).includes(dayName('positions', -20)));
  assert.ok(!(await partitions('positions')).includes(dayName('positions', 10)));

  // Another worker holds the maintenance lock: this one must not run maintenance meanwhile.
  const holder = await pool.connect();
  await holder.query('SELECT pg_advisory_lock(724311004)');
  worker = await startWorker({
    REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(),
    PARTITION_PREMAKE_DAYS: '10', RETENTION_DAYS: '5', DEDUP_RETENTION_DAYS: '3', PARTITION_MAINTENANCE_INTERVAL_MS: '1000',
  });
  await new Promise((r) => setTimeout(r, 2500));
  assert.ok(!worker.logs.some((l) => l.msg === 'partition maintenance done'), 'maintenance waits for the lock holder');
  await holder.query('SELECT pg_advisory_unlock(724311004)');
  holder.release();
  await worker.waitForLog((l) => l.msg === 'partition maintenance done', 15000);

  await waitFor(async () => ((await partitions('positions')).includes(dayName('positions', 10)) ? true : undefined), 5000, 'premade');
  for (const t of ['positions', 'cell_stats', 'ping_log', 'track_windows', 'cell_window_entities']) {
    const parts = await partitions(t);
    for (let d = 0; d <= 10; d++) assert.ok(parts.includes(dayName(t, d)), `${t}: partition ${d} days ahead exists`);
    assert.ok(!parts.includes(dayName(t, -20)), `${t}: 20-day-old partition dropped`);
    const keepsFourDays = t === 'positions' || t === 'cell_stats';
    assert.equal(parts.includes(dayName(t, -4)), keepsFourDays, `${t}: 4-day-old partition ${keepsFourDays ? 'kept (retention 5 d)' : 'dropped (dedup retention 3 d)'}`);
  }
  assert.equal(Number((await pool.query(`SELECT count(*) AS n FROM positions WHERE entity_id = 'old'`)).rows[0].n), 0, 'expired rows are gone');

  // Partitions created by maintenance (beyond the migration's 7 days) inherit every index.
  const pos = await indexDefs(dayName('positions', 10));
  assert.ok(pos.some((d) => /USING gist \(geom\)/.test(d)), 'positions: GiST');
  assert.ok(pos.some((d) => /USING brin \(ts\)/.test(d)), 'positions: BRIN');
  assert.ok(pos.some((d) => /UNIQUE INDEX .* \(tenant, entity_id, ts\)/.test(d)), 'positions: unique key');
  const cs = await indexDefs(dayName('cell_stats', 10));
  assert.ok(cs.some((d) => /USING gist \(extent\)/.test(d)), 'cell_stats: GiST');
  assert.ok(cs.some((d) => /USING brin \(win\)/.test(d)), 'cell_stats: BRIN');
  assert.ok(cs.some((d) => /UNIQUE INDEX .* \(tenant, cell, win\)/.test(d)), 'cell_stats: unique key');
  assert.ok((await indexDefs(dayName('ping_log', 10))).some((d) => /UNIQUE INDEX .* \(tenant, entity_id, ts, seq\)/.test(d)), 'ping_log: unique key');
});
