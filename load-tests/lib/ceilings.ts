/**
 * The machine's ceilings, measured in the same run as the scenarios so results can be read
 * as ratios: redis-benchmark pipelined GEOADD / XADD on the bench Redis, a raw uWS echo rate
 * with the same `ws` client the driver client uses, and a plain COPY into a partitioned,
 * indexed PostGIS table shaped like `positions`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import WebSocket from 'ws';
import type { Ceilings } from './report.js';
import { progress } from './report.js';
import type { BenchStack } from './stack.js';
import { startNodeChild } from './stack.js';
import { withRedis } from './context.js';

const execFileP = promisify(execFile);

async function redisBench(port: number, n: number, pipelineDepth: number, cmd: string[]): Promise<number> {
  const { stdout } = await execFileP('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-n', String(n), '-c', '50', '-P', String(pipelineDepth), '-r', '1000000', '-q', '--csv', ...cmd], { timeout: 120_000 });
  const line = stdout.trim().split('\n').pop() ?? '';
  const rps = Number(/^"[^"]*","([\d.]+)"/.exec(line)?.[1]);
  if (!Number.isFinite(rps)) throw new Error(`redis-benchmark output not understood: ${stdout}`);
  return Math.round(rps);
}

export async function redisCeilings(stack: BenchStack, n: number): Promise<Pick<Ceilings, 'redisGeoaddP16' | 'redisXaddP16' | 'redisGeoaddP1'>> {
  const geo = ['geoadd', 'benchceil:geo', '-9.1393', '38.7223', 'm:__rand_int__'];
  const out = {
    redisGeoaddP16: await redisBench(stack.redisPort, n, 16, geo),
    redisXaddP16: await redisBench(stack.redisPort, n, 16, ['xadd', 'benchceil:xs', 'MAXLEN', '~', '100000', '*', 'p', 'payload-of-a-ping-0123456789abcdef']),
    redisGeoaddP1: await redisBench(stack.redisPort, Math.min(n, 100_000), 1, geo),
  };
  await withRedis(stack.redisUrl, async (r) => { await r.del('benchceil:geo', 'benchceil:xs'); });
  return out;
}

/** Closed loop: `conns` sockets with `window` frames in flight each, for `seconds`. */
export async function uwsEchoCeiling(seconds: number, conns = 50, window = 16): Promise<number> {
  const srv = startNodeChild('echo', 'dist/load-tests/lib/echo-server.js', {});
  try {
    const line = await srv.waitForLog((l) => l.msg === 'echo listening');
    const url = `ws://127.0.0.1:${Number(line.port)}/`;
    const payload = JSON.stringify({ id: 'drv-1', lat: 38.722301, lon: -9.139301, ts: Date.now(), seq: 1, speed: 11.2, heading: 93, kind: 'car', status: 'available' });
    const sockets = await Promise.all(Array.from({ length: conns }, () => new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    })));
    let count = 0;
    let running = false;
    for (const ws of sockets) ws.on('message', () => { if (running) { count++; ws.send(payload); } });
    await new Promise((r) => setTimeout(r, 200));
    running = true;
    const t0 = performance.now();
    for (const ws of sockets) for (let i = 0; i < window; i++) ws.send(payload);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    running = false;
    const rate = count / ((performance.now() - t0) / 1000);
    for (const ws of sockets) ws.terminate();
    return Math.round(rate);
  } finally {
    await srv.stop();
  }
}

/** Plain COPY of `rows` synthetic positions into a partitioned table with a PK, GiST and BRIN index. */
export async function pgCopyCeiling(databaseUrl: string, rows: number): Promise<number> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    await c.query('CREATE EXTENSION IF NOT EXISTS postgis');
    await c.query('DROP TABLE IF EXISTS bench_copy_ceiling');
    await c.query(`CREATE TABLE bench_copy_ceiling (
      tenant text NOT NULL, entity_id text NOT NULL, ts timestamptz NOT NULL, geom geometry(Point, 4326) NOT NULL,
      speed real, heading real, accuracy real, kind text, status text, cell text NOT NULL,
      ping_count integer NOT NULL DEFAULT 1, mean_speed real, PRIMARY KEY (tenant, entity_id, ts)
    ) PARTITION BY RANGE (ts)`);
    const day0 = new Date(); day0.setUTCHours(0, 0, 0, 0);
    for (let d = -1; d <= 1; d++) {
      const from = new Date(day0.getTime() + d * 86_400_000).toISOString();
      const to = new Date(day0.getTime() + (d + 1) * 86_400_000).toISOString();
      await c.query(`CREATE TABLE bench_copy_ceiling_p${d + 1} PARTITION OF bench_copy_ceiling FOR VALUES FROM ('${from}') TO ('${to}')`);
    }
    await c.query('CREATE INDEX ON bench_copy_ceiling USING gist (geom)');
    await c.query('CREATE INDEX ON bench_copy_ceiling USING brin (ts)');
    const base = Date.now() - 3600_000;
    const entities = 5000;
    function* lines(): Generator<string> {
      let buf = '';
      for (let i = 0; i < rows; i++) {
        const e = i % entities;
        const ts = new Date(base + Math.floor(i / entities) * 1000).toISOString();
        const lat = (38.7 + ((i * 7919) % 10_000) / 100_000).toFixed(6);
        const lon = (-9.2 + ((i * 104_729) % 10_000) / 100_000).toFixed(6);
        buf += `bench\tdrv-${e}\t${ts}\tSRID=4326;POINT(${lon} ${lat})\t11.5\t90\t5\tcar\tavailable\t13/4021/3087\t1\t11.5\n`;
        if (buf.length > 64 * 1024) { yield buf; buf = ''; }
      }
      if (buf) yield buf;
    }
    const t0 = performance.now();
    await pipeline(Readable.from(lines()), c.query(copyStreams.from('COPY bench_copy_ceiling FROM STDIN')));
    const secs = (performance.now() - t0) / 1000;
    await c.query('DROP TABLE IF EXISTS bench_copy_ceiling');
    return Math.round(rows / secs);
  } finally {
    await c.end();
  }
}

export async function measureCeilings(stack: BenchStack, o: { redisBenchN: number; copyRows: number; echoSeconds: number }): Promise<Ceilings> {
  const out: Ceilings = { notes: [] };
  const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
    progress(`ceiling: ${name}`);
    try { await fn(); } catch (err) { out.notes!.push(`${name} failed: ${(err as Error).message}`); progress(`ceiling ${name} failed: ${(err as Error).message}`); }
  };
  await step('redis-benchmark GEOADD/XADD', async () => { Object.assign(out, await redisCeilings(stack, o.redisBenchN)); });
  await step('uWS echo', async () => { out.uwsEchoMsgsPerSec = await uwsEchoCeiling(o.echoSeconds); });
  await step(`PostGIS COPY ${o.copyRows} rows`, async () => { out.pgCopyRowsPerSec = await pgCopyCeiling(stack.databaseUrl, o.copyRows); });
  progress(`ceilings: ${JSON.stringify(out)}`);
  return out;
}
