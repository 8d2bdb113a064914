/**
 * Quick write-path measurement of one worker process (not the benchmark harness):
 *   node dist/workers/bench-flush.js [window|raw] [pings=200000] [entities=20000]
 * Preloads the pings into cell streams under a fresh key prefix, creates a scratch database,
 * starts `dist/workers/main.js`, sums the durations of its flushes until every ping is read,
 * then measures a plain COPY of the same number of rows into a partitioned table with a GiST
 * and a unique index (the ceiling). REDIS_URL / DATABASE_URL as for the worker (the database
 * in the URL is only used to create and drop the scratch one).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { loadConfig, projectRoot } from '../src/config/load.js';
import { createLogger } from '../src/log/logger.js';
import { connectRedis } from '../src/store/redis/client.js';
import { DependencyError, describeUrl } from '../src/errors/dependency-error.js';
import { encodeAccepted, STREAM_FIELD } from '../src/store/redis/codec.js';
import { createKeys, cellMember } from '../src/store/redis/keys.js';
import { cellOf } from '../src/geo/tiles.js';
import type { AcceptedPing } from '../src/protocol/ping.js';

const USAGE = `node dist/workers/bench-flush.js [window|raw] [pings=200000] [entities=20000]
  write-path measurement of one worker process against REDIS_URL / DATABASE_URL`;
const fail = (message: string, code: number): never => {
  process.stderr.write(`${message}\n`);
  process.exit(code);
};
const args = process.argv.slice(2);
if (args.includes('-h') || args.includes('--help')) { process.stdout.write(`${USAGE}\n`); process.exit(0); }
if (args[0] !== undefined && args[0] !== 'window' && args[0] !== 'raw') fail(`mode must be window or raw, not ${args[0]}\n${USAGE}`, 2);
const count = (i: number, dflt: number): number => {
  const v = Number(args[i] ?? dflt);
  return Number.isInteger(v) && v > 0 ? v : fail(`${args[i]} is not a positive whole number\n${USAGE}`, 2);
};
const mode = args[0] === 'raw' ? 'raw' : 'window';
const N = count(1, 200_000);
const ENT = count(2, 20_000);
const cfg = loadConfig();
const withDb = (url: string, db: string): string => { const u = new URL(url); u.pathname = `/${db}`; return u.toString(); };
const dbName = `gf_bench_${mode}_${process.pid}`;
const admin = new pg.Client({ connectionString: withDb(cfg.database.url, 'postgres') });
await admin.connect().catch((err: unknown) => fail(`${new DependencyError('PostgreSQL', describeUrl(cfg.database.url), err).message} (DATABASE_URL)`, 1));
const redis: Redis = await connectRedis(cfg.redis.url, createLogger(cfg, 'cli'), 'geoflux-bench-flush')
  .catch(async (err: unknown) => { await admin.end(); return fail(`${(err as Error).message} (REDIS_URL)`, 1); });
await admin.query(`CREATE DATABASE ${dbName}`);
const dbUrl = withDb(cfg.database.url, dbName);
const prefix = `bench${process.pid}:`;
const keys = createKeys(prefix);
const t0 = Date.now() - 5 * 60_000;
const ping = (i: number): AcceptedPing => {
  const e = i % ENT, k = Math.floor(i / ENT);
  const lat = 41.0 + (e % 200) * 0.002 + k * 1e-5, lon = -8.8 + Math.floor(e / 200) * 0.003 + k * 1e-5;
  return { tenant: 'acme', id: `v${e}`, ts: t0 + k * 1000 + (e % 1000), seq: k, lat, lon, speed: (e + k) % 30, heading: 90, status: 'available', rx: t0, cell: cellOf(lon, lat, cfg.grid.ingestZoom) };
};
let pipe = redis.pipeline();
const cells = new Set<string>();
for (let i = 0; i < N; i++) {
  const p = ping(i);
  pipe.xadd(keys.cell('acme', p.cell).stream, '*', STREAM_FIELD, encodeAccepted(p));
  cells.add(p.cell);
  if (i % 5000 === 4999) { await pipe.exec(); pipe = redis.pipeline(); }
}
for (const c of cells) pipe.zadd(keys.activeCells, Date.now(), cellMember('acme', c));
await pipe.exec();

const worker = spawn(process.execPath, [join(projectRoot(), 'dist/workers/main.js')], {
  env: { ...process.env, DATABASE_URL: dbUrl, REDIS_KEY_PREFIX: prefix, PERSIST_MODE: mode, FLUSH_INTERVAL_MS: '1000', LOG_PRETTY: 'false', INSTANCE_ID: `bench-${process.pid}` },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const flushes: { read: number; ms: number; positions: number; steps: Record<string, number> }[] = [];
createInterface({ input: worker.stdout! }).on('line', (l) => {
  try { const o = JSON.parse(l) as { msg?: string }; if (o.msg === 'flushed') flushes.push(o as unknown as (typeof flushes)[number]); } catch { /* not JSON */ }
});
const deadline = Date.now() + 600_000;
while (flushes.reduce((s, f) => s + f.read, 0) < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
worker.kill('SIGTERM');
await new Promise((r) => worker.once('exit', r));
const busyMs = flushes.reduce((s, f) => s + f.ms, 0);
const rows = flushes.reduce((s, f) => s + f.positions, 0);

const c = new pg.Client({ connectionString: dbUrl });
await c.connect();
await c.query(`CREATE TABLE ceiling (LIKE positions INCLUDING DEFAULTS) PARTITION BY RANGE (ts)`);
await c.query(`CREATE TABLE ceiling_p PARTITION OF ceiling FOR VALUES FROM ('2000-01-01') TO ('2100-01-01')`);
await c.query(`ALTER TABLE ceiling ADD PRIMARY KEY (tenant, entity_id, ts)`);
await c.query(`CREATE INDEX ON ceiling USING gist (geom)`);
function* lines(): Generator<string> {
  for (let i = 0; i < N; i += 5000) {
    let s = '';
    for (let j = i; j < Math.min(N, i + 5000); j++) {
      const p = ping(j);
      s += `acme\t${p.id}\t${new Date(p.ts).toISOString()}\tSRID=4326;POINT(${p.lon} ${p.lat})\t${p.speed}\t90\t\\N\t\\N\tavailable\t${p.cell}\t1\t${p.speed}\t${p.seq}\n`;
    }
    yield s;
  }
}
const s0 = Date.now();
await pipeline(Readable.from(lines()), c.query(copyStreams.from('COPY ceiling (tenant, entity_id, ts, geom, speed, heading, accuracy, kind, status, cell, ping_count, mean_speed, seq) FROM STDIN')));
const copyMs = Date.now() - s0;
await c.end();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
await admin.end();
const streams = [...cells].map((cell) => keys.cell('acme', cell).stream);
for (let i = 0; i < streams.length; i += 500) await redis.del(...streams.slice(i, i + 500), keys.activeCells);
await redis.quit();
process.stdout.write(`${JSON.stringify({
  mode, pings: N, entities: ENT, cells: cells.size, flushes: flushes.length, busy_ms: busyMs,
  pings_per_s: Math.round(N / (busyMs / 1000)), positions_rows: rows, rows_per_s: Math.round(rows / (busyMs / 1000)),
  steps_ms: flushes.map((f) => f.steps), copy_ceiling_rows_per_s: Math.round(N / (copyMs / 1000)),
})}\n`);
