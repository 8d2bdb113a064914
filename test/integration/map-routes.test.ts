import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, startWorker, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';
import { projectRoot } from '../../src/config/load.js';
import { resolveStatic } from '../../src/http/routes/static.js';
import { defaultDataDir } from '../../src/sim/data-dir.js';
import { DriverClient } from '../../src/clients/driver-client.js';

/** The map page's routes on a real gateway: page, vendor files, no traversal, demo token, /v1/stats. */
let gateway: Child & { url: string; port: number };
let worker: Child;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let env: Record<string, string>;

before(async () => {
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  env = { REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), FLUSH_INTERVAL_MS: '500' };
  gateway = await startGateway(env);
  worker = await startWorker(env);
});

after(async () => {
  await Promise.all([gateway?.stop(), worker?.stop()]);
  await db?.drop();
});

/** GET with the path sent exactly as given (fetch would normalise `..`). */
function rawGet(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the page and its assets are served with the right content types', async () => {
  for (const [path, type] of [
    ['/', 'text/html'], ['/map', 'text/html'], ['/static/app.js', 'text/javascript'], ['/static/style.css', 'text/css'],
    ['/vendor/leaflet/leaflet.js', 'text/javascript'], ['/vendor/leaflet/leaflet.css', 'text/css'], ['/vendor/leaflet/images/layers.png', 'image/png'],
    ['/vendor/msgpackr/index.min.js', 'text/javascript'], ['/vendor/socket.io/socket.io.msgpack.min.js', 'text/javascript'],
  ] as const) {
    const r = await rawGet(gateway.port, path);
    assert.equal(r.status, 200, path);
    assert.ok(r.type.startsWith(type), `${path}: ${r.type}`);
    assert.ok(r.body.length > 100, path);
  }
  const page = await rawGet(gateway.port, '/');
  assert.match(page.body, /\/vendor\/leaflet\/leaflet\.js/);
  assert.match(page.body, /\/vendor\/socket\.io\/socket\.io\.msgpack\.min\.js/, 'the socket.io build with the rooms\' packet parser');
  assert.doesNotMatch(page.body, /https?:\/\/(unpkg|cdn|cdnjs)/, 'no CDN');
});

test('no directory traversal, no other files', async () => {
  for (const path of [
    '/static/../package.json', '/static/..%2f..%2fpackage.json', '/static/%2e%2e/%2e%2e/package.json', '/vendor/leaflet/../../../package.json',
    '/vendor/leaflet/..%2F..%2F..%2Fconfig%2Fdefault.json', '/static/app.js%00.png', '/vendor/msgpackr/../package.json', '/static/', '/static/nope.js',
    '/vendor/leaflet/%2e%2e%5c%2e%2e%5cpackage.json',
  ]) {
    const r = await rawGet(gateway.port, path);
    assert.equal(r.status, 404, `${path} → ${r.status}`);
    assert.doesNotMatch(r.body, /"dependencies"|jwtSecret/, path);
  }
  const base = join(projectRoot(), 'public');
  assert.equal(resolveStatic(base, '../package.json'), undefined);
  assert.equal(resolveStatic(base, '%2e%2e/package.json'), undefined);
  assert.equal(resolveStatic(base, 'a/../../package.json'), undefined);
  assert.equal(resolveStatic(base, '..\\package.json'), undefined);
  assert.equal(resolveStatic(base, 'index.ts'), undefined, 'only known file types');
  assert.equal(resolveStatic(base, 'app.js'), join(base, 'app.js'));
});

test('demo token: subscribe + query for tenant demo, only outside production', async () => {
  const r = await fetch(`${gateway.url}/v1/demo-token`);
  assert.equal(r.status, 200);
  const body = await r.json() as { token: string; tenant: string; scopes: string[] };
  assert.equal(body.tenant, 'demo');
  const claims = JSON.parse(Buffer.from(body.token.split('.')[1]!, 'base64url').toString()) as { tenant: string; scope: string };
  assert.equal(claims.tenant, 'demo');
  assert.deepEqual(claims.scope.split(' ').sort(), ['query', 'subscribe']);
  // It cannot publish.
  await assert.rejects(DriverClient.connect(gateway.url, body.token), (e: Error & { status?: number }) => e.status === 403);

  const prod = await startGateway({ ...env, NODE_ENV: 'production', JWT_SECRET: 'a-production-secret-that-is-long-enough-0123' }).catch((err: Error) => err);
  if (prod instanceof Error) {
    assert.fail(`production gateway did not start: ${prod.message.slice(0, 400)}`);
  }
  try {
    assert.equal((await fetch(`${prod.url}/v1/demo-token`)).status, 404);
    assert.equal((await fetch(`${prod.url}/`)).status, 200, 'the page itself is still served');
  } finally {
    await prod.stop();
  }
});

test('GET /v1/stats: pings/s, live entities of the caller tenant, persistence lag', async () => {
  assert.equal((await fetch(`${gateway.url}/v1/stats`)).status, 401);
  const demo = (await (await fetch(`${gateway.url}/v1/demo-token`)).json() as { token: string }).token;
  const get = async (t: string): Promise<Record<string, number | null>> => {
    const r = await fetch(`${gateway.url}/v1/stats`, { headers: { authorization: `Bearer ${t}` } });
    assert.equal(r.status, 200);
    return await r.json() as Record<string, number | null>;
  };
  const s0 = await get(demo);
  assert.equal(s0.entitiesLive, 0);
  const drivers = await Promise.all(['d-1', 'd-2', 'd-3'].map(async (id) => DriverClient.connect(gateway.url, await token(id, ['ingest'], 'demo'), { encoding: 'msgpack' })));
  try {
    const t0 = Date.now();
    for (let k = 0; k < 5; k++) {
      const acks = await Promise.all(drivers.map((c, i) => c.send({ id: `d-${i + 1}`, lat: 41.15 + i * 0.001 + k * 0.0001, lon: -8.61, ts: t0 + k * 1000, seq: k + 1 })));
      for (const a of acks) assert.equal(a.count, 1);
    }
    await new Promise((r) => setTimeout(r, 600));
    const s1 = await get(demo);
    assert.equal(s1.entitiesLive, 3);
    assert.ok(s1.pingsTotal! >= 15);
    assert.ok(typeof s1.pingsPerSecond === "number" && s1.pingsPerSecond > 0, `pings/s ${s1.pingsPerSecond}`);
    // Another tenant sees none of them.
    assert.equal((await get(await token('viewer', ['query'], 'other'))).entitiesLive, 0);
    // The worker publishes its status: the lag becomes a number.
    const end = Date.now() + 10_000;
    let s2 = s1;
    while ((s2.persistenceLagMs === null || s2.workers === 0) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 300));
      s2 = await get(demo);
    }
    assert.ok(s2.workers! >= 1, 'worker status seen');
    assert.ok(typeof s2.persistenceLagMs === 'number' && s2.persistenceLagMs >= 0 && s2.persistenceLagMs < 10_000, `lag ${s2.persistenceLagMs}`);
  } finally {
    await Promise.all(drivers.map((d) => d.close()));
  }
});

test('Porto street layer for the offline base map', { skip: existsSync(join(defaultDataDir(), 'porto-roads')) ? false : 'no road data' }, async () => {
  const r = await fetch(`${gateway.url}/data/porto-roads.json`);
  assert.equal(r.status, 200);
  const body = await r.json() as { attribution: string; lines: number[][] };
  assert.match(body.attribution, /OpenStreetMap/);
  assert.ok(body.lines.length > 11_000);
  assert.ok(body.lines.every((l) => l.length >= 4 && l.length % 2 === 0));
});
