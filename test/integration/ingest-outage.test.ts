import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Redis } from 'ioredis';
import { DriverClient } from '../../src/clients/driver-client.js';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';

/**
 * Faults: Redis unreachable (a TCP proxy in front of the real Redis is cut) → frames get
 * UNAVAILABLE and ack count 0, nothing is acked that is not durable, and ingest recovers when
 * Redis is back; SIGTERM closes driver sockets with 4000 (SHUTTING_DOWN / server restart).
 */
let gw: Child & { url: string };
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let proxy: net.Server;
let up = true;
const conns = new Set<net.Socket>();
const prefix = randomKeyPrefix();

before(async () => {
  const target = new URL(testServices().redisUrl);
  proxy = net.createServer((c) => {
    if (!up) { c.destroy(); return; }
    const r = net.connect(Number(target.port), target.hostname);
    conns.add(c); conns.add(r);
    c.pipe(r); r.pipe(c);
    const end = () => { c.destroy(); r.destroy(); conns.delete(c); conns.delete(r); };
    c.on('error', end); r.on('error', end); c.on('close', end); r.on('close', end);
  });
  await new Promise<void>((res) => proxy.listen(0, '127.0.0.1', res));
  const port = (proxy.address() as net.AddressInfo).port;
  db = await createTestDatabase();
  gw = await startGateway({ REDIS_URL: `redis://127.0.0.1:${port}`, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix });
});

after(async () => {
  await gw?.stop();
  for (const c of conns) c.destroy();
  proxy?.close();
  const redis = new Redis(testServices().redisUrl);
  const ks = await redis.keys(`${prefix}*`);
  if (ks.length) await redis.del(...ks);
  await redis.quit();
  await db?.drop();
});

const ping = (seq: number) => ({ id: 'out-1', lat: 59.33, lon: 18.07, ts: Date.now(), seq });

test('Redis unreachable: UNAVAILABLE and count 0, then recovery', async () => {
  const c = await DriverClient.connect(gw.url, await token('out-1', ['ingest']));
  assert.equal((await c.send(ping(1))).count, 1);
  up = false;
  for (const s of conns) s.destroy();
  const r = await c.send(ping(2));
  assert.equal(r.count, 0);
  assert.equal(r.errors[0]?.code, 'UNAVAILABLE');
  const ready = await fetch(`${gw.url}/readyz`);
  assert.equal(ready.status, 503);
  // HTTP: a good ping beside a bad one is 503 (retry), not the bad one's 400.
  const post = await fetch(`${gw.url}/v1/pings`, {
    method: 'POST', headers: { authorization: `Bearer ${await token('out-1', ['ingest'])}`, 'content-type': 'application/json' },
    body: JSON.stringify([ping(2), { ...ping(2), lat: 99 }]),
  });
  const pb = await post.json() as { accepted: number; errors: { code: string }[] };
  assert.deepEqual([post.status, pb.accepted, pb.errors.map((e) => e.code)], [503, 0, ['UNAVAILABLE', 'INVALID_COORDINATES']]);
  up = true;
  const deadline = Date.now() + 15_000;
  let ok = 0;
  while (Date.now() < deadline && ok === 0) {
    ok = (await c.send(ping(3))).count;
    if (ok === 0) await new Promise((res) => setTimeout(res, 200));
  }
  assert.equal(ok, 1, 'ingest recovered');
  const redis = new Redis(testServices().redisUrl);
  const keys = await redis.keys(`${prefix}e:*out-1`);
  assert.equal(Number(await redis.hget(keys[0]!, 'seq')), 3);
  await redis.quit();
  await c.close();
});

test('SIGTERM: driver sockets get SHUTTING_DOWN and are closed with 4000 (reconnect elsewhere)', async () => {
  const c = await DriverClient.connect(gw.url, await token('out-2', ['ingest']));
  const errs: string[] = [];
  c.on('errorFrame', (e) => errs.push(e.code));
  const closed = c.closed;
  await gw.stop();
  assert.equal((await closed).code, 4000);
  assert.deepEqual(errs, ['SHUTTING_DOWN']);
});
