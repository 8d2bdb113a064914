/**
 * Quick measurement of the Redis write path alone (no sockets): N entities moving around
 * Porto, ROUNDS batches of one ping each, through the real LiveWriter (both Lua pipelines).
 * Reports pings/s and CPU microseconds per ping for Redis (INFO cpu delta: the whole server,
 * so run it on a quiet Redis) and for this process. Keys use a random prefix and are deleted.
 * `--batch` splits each round into writes of that many pings (what a gateway writes per turn
 * under single-ping frames: tens to a few hundred), `--concurrency` keeps that many in flight.
 *   node dist/src/ingest/bench-writer-cli.js [--redis redis://127.0.0.1:6390] [--entities 2000] [--rounds 50] [--batch 67 --concurrency 8] [--cluster-safe]
 */
import { parseCliArgs } from '../lifecycle/cli-args.js';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createKeys } from '../store/redis/keys.js';
import { createLiveWriter } from '../store/redis/live-writer.js';
import { cellOf } from '../geo/tiles.js';
import type { AcceptedPing } from '../protocol/ping.js';

const USAGE = `node dist/src/ingest/bench-writer-cli.js [options]: Redis CPU per ping of the write path alone

  --redis URL         Redis to measure (default $REDIS_URL or redis://127.0.0.1:6390); run it on a quiet one
  --entities N        entities, one ping each per round (default 2000)
  --rounds N          rounds (default 50)
  --zoom Z            ingest zoom of the cells (default 13)
  --batch N           pings per write (default: a whole round)
  --concurrency N     writes in flight (default 1)
  --cluster-safe      one script call per hash tag (entity bucket, cell), as for Redis Cluster
  --entity-state-in-aof  entity state writes go to the AOF too (default: replicas only)`;

const values = parseCliArgs(USAGE, {
  redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6390' },
  entities: { type: 'string', default: '2000' },
  rounds: { type: 'string', default: '50' },
  zoom: { type: 'string', default: '13' },
  batch: { type: 'string' },
  concurrency: { type: 'string', default: '1' },
  'cluster-safe': { type: 'boolean', default: false },
  'entity-state-in-aof': { type: 'boolean', default: false },
});
const N = Number(values.entities), ROUNDS = Number(values.rounds), Z = Number(values.zoom);
const BATCH = Math.max(1, Number(values.batch ?? N)), CONC = Math.max(1, Number(values.concurrency));
const redis = new Redis(values.redis!);
const prefix = `wb${randomBytes(3).toString('hex')}:`;
const keys = createKeys(prefix);
const writer = createLiveWriter(redis, keys, { entityTtlSeconds: 60, streamMaxLen: 100000, maxSpeedMps: 90, jumpSlackMeters: 100, clusterSafe: values['cluster-safe'], entityStateInAof: values['entity-state-in-aof'] });
const redisCpu = async (): Promise<number> => {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1]);
};
let seed = 12345;
const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const pos = Array.from({ length: N }, () => [41.1 + rand() * 0.1, -8.7 + rand() * 0.2] as [number, number]);
const c0 = await redisCpu();
const u0 = process.cpuUsage();
const t0 = performance.now();
for (let r = 0; r < ROUNDS; r++) {
  const now = Date.now();
  const pings: AcceptedPing[] = pos.map((p, i) => {
    p[0] += 1e-5;
    return { id: `v${i}`, lat: p[0], lon: p[1], ts: now + r, seq: r, speed: 10, status: 'available', tenant: 'bench', cell: cellOf(p[1], p[0], Z), rx: now };
  });
  const writes: AcceptedPing[][] = [];
  for (let i = 0; i < pings.length; i += BATCH) writes.push(pings.slice(i, i + BATCH));
  await Promise.all(Array.from({ length: CONC }, async () => {
    for (let w = writes.shift(); w; w = writes.shift()) await writer.write(w);
  }));
}
const secs = (performance.now() - t0) / 1000;
const c1 = await redisCpu();
const u = process.cpuUsage(u0);
const total = N * ROUNDS;
process.stdout.write(JSON.stringify({
  pings: total, batch: Math.min(BATCH, N), concurrency: CONC, clusterSafe: values['cluster-safe'], entityStateInAof: values['entity-state-in-aof'], seconds: Number(secs.toFixed(2)), pingsPerSecond: Math.round(total / secs),
  redisCpuMicrosPerPing: Number((((c1 - c0) * 1e6) / total).toFixed(1)), processCpuMicrosPerPing: Number(((u.user + u.system) / total).toFixed(1)),
}) + '\n');
const ks = await redis.keys(`${prefix}*`);
for (let i = 0; i < ks.length; i += 500) await redis.del(...ks.slice(i, i + 500));
await redis.quit();
