import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { DriverClient, DriverConnectError } from '../../src/clients/driver-client.js';
import { mintHmacToken, mintKeyToken } from '../../src/auth/tokens.js';
import { token, TEST_JWT_SECRET } from '../helpers/tokens.js';
import { startIngestEnv, type IngestEnv } from './ingest-helpers.js';

/** Auth matrix: missing / expired / forged / wrong scope / wrong entity / cross-tenant; fleet tokens; JWKS (ES256). */
let env: IngestEnv;
let jwksEnv: IngestEnv;
let dir: string;
let privateKey: KeyObject;
let rsaKey: KeyObject;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gf-jwks-'));
  const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  privateKey = kp.privateKey;
  const jwk = { ...kp.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' };
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  rsaKey = rsa.privateKey;
  const rsaJwk = { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'r1', alg: 'RS256', use: 'sig' };
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk, rsaJwk] }));
  [env, jwksEnv] = await Promise.all([startIngestEnv(), startIngestEnv({ JWKS_FILE: join(dir, 'jwks.json') })]);
});
after(async () => {
  await Promise.all([env?.stop(), jwksEnv?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function refused(url: string, tok: string | undefined, opts: { tokenIn?: 'header' | 'query' } = {}): Promise<DriverConnectError> {
  try {
    const c = await DriverClient.connect(url, tok, opts);
    await c.close();
  } catch (err) {
    assert.ok(err instanceof DriverConnectError, String(err));
    return err;
  }
  throw new Error('connection was accepted');
}

const ping = (id: string, extra: Record<string, unknown> = {}) => ({ id, lat: 35.68, lon: 139.69, ts: Date.now() - 1000, ...extra });

test('upgrade refused: missing, expired, forged, wrong scope, bad tenant', async () => {
  const cases: [string, string | undefined, number, string][] = [
    ['missing', undefined, 401, 'UNAUTHORIZED'],
    ['expired', await token('d1', ['ingest'], 'acme', -60), 401, 'UNAUTHORIZED'],
    ['forged', await mintHmacToken('another-secret-that-is-long-enough-0123', { sub: 'd1', tenant: 'acme', scopes: ['ingest'], ttlSeconds: 60, issuer: 'geoflux' }), 401, 'UNAUTHORIZED'],
    ['wrong issuer', await mintHmacToken(TEST_JWT_SECRET, { sub: 'd1', tenant: 'acme', scopes: ['ingest'], ttlSeconds: 60, issuer: 'evil' }), 401, 'UNAUTHORIZED'],
    ['garbage', 'not.a.jwt', 401, 'UNAUTHORIZED'],
    ['subscribe scope only', await token('d1', ['subscribe']), 403, 'FORBIDDEN'],
    ['query scope only', await token('d1', ['query']), 403, 'FORBIDDEN'],
    ['bad tenant', await token('d1', ['ingest'], 'bad tenant!'), 401, 'UNAUTHORIZED'],
  ];
  for (const [name, tok, status, code] of cases) {
    const e = await refused(env.gw.url, tok);
    assert.equal(e.status, status, name);
    assert.equal(e.code, code, name);
  }
  // The query-parameter form is refused the same way, and accepted with a good token.
  assert.equal((await refused(env.gw.url, await token('d1', ['query']), { tokenIn: 'query' })).status, 403);
  const c = await DriverClient.connect(env.gw.url, await token('d1', ['ingest']), { tokenIn: 'query' });
  assert.equal((await c.send(ping('d1'))).count, 1);
  await c.close();
});

test('a driver token publishes only its own id; a fleet token publishes many ids of its own tenant', async () => {
  const drv = await DriverClient.connect(env.gw.url, await token('drv-1', ['ingest']));
  const r = await drv.send([ping('drv-1'), ping('drv-2')]);
  assert.equal(r.count, 1);
  assert.deepEqual(r.errors.map((e) => [e.index, e.code]), [[1, 'NOT_YOUR_ENTITY']]);
  await drv.close();
  const fleetTok = await mintHmacToken(TEST_JWT_SECRET, { sub: 'depot-gw', tenant: 'beta', scopes: ['ingest'], ttlSeconds: 60, issuer: 'geoflux', fleet: true });
  const fleet = await DriverClient.connect(env.gw.url, fleetTok, { encoding: 'msgpack' });
  const rf = await fleet.send([ping('bus-1'), ping('bus-2'), ping('drv-1', { lat: 35.681 })]);
  assert.equal(rf.count, 3);
  await fleet.close();
  // Fleet pings landed in tenant beta, not in acme: drv-1 of acme is untouched.
  const acme = await env.redis.hget(env.keys.entity('acme', 'drv-1'), 'lat');
  const beta = await env.redis.hget(env.keys.entity('beta', 'drv-1'), 'lat');
  assert.equal(Number(acme), 35.68);
  assert.equal(Number(beta), 35.681);
});

test('REST: scopes and tenant isolation on every query endpoint and POST /v1/pings', async () => {
  const acmeQ = { authorization: `Bearer ${await token('dispatch', ['query'])}` };
  const betaQ = { authorization: `Bearer ${await token('dispatch', ['query'], 'beta')}` };
  const ingestOnly = { authorization: `Bearer ${await token('drv-1', ['ingest'])}` };
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${env.gw.url}${path}`, { headers });
    return { status: res.status, body: await res.json() as Record<string, unknown> };
  };
  // Only the own tenant's entities are visible.
  assert.equal((await get('/v1/entities/bus-1', acmeQ)).status, 404);
  assert.equal((await get('/v1/entities/bus-1', betaQ)).status, 200);
  const nearAcme = await get('/v1/nearby?lat=35.68&lon=139.69&radius=1000', acmeQ);
  const nearBeta = await get('/v1/nearby?lat=35.68&lon=139.69&radius=1000', betaQ);
  const ids = (b: Record<string, unknown>) => (b.results as { id: string }[]).map((x) => x.id).sort();
  assert.deepEqual(ids(nearAcme.body), ['d1', 'drv-1']);
  assert.deepEqual(ids(nearBeta.body), ['bus-1', 'bus-2', 'drv-1']);
  assert.deepEqual(ids((await get('/v1/within?bbox=139.6,35.6,139.8,35.8', betaQ)).body), ['bus-1', 'bus-2', 'drv-1']);
  // Scopes.
  for (const path of ['/v1/nearby?lat=35.68&lon=139.69&radius=1000', '/v1/within?bbox=139.6,35.6,139.8,35.8', '/v1/entities/drv-1']) {
    const none = await get(path);
    assert.equal(none.status, 401, path);
    assert.equal((none.body.error as { code: string }).code, 'UNAUTHORIZED');
    const wrong = await get(path, ingestOnly);
    assert.equal(wrong.status, 403, path);
    assert.equal((wrong.body.error as { code: string }).code, 'FORBIDDEN');
    assert.equal((await get(path, { authorization: `Bearer ${await token('x', ['query'], 'acme', -5)}` })).status, 401, `${path} expired`);
  }
  const post = (headers: Record<string, string>) => fetch(`${env.gw.url}/v1/pings`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(ping('drv-1')) });
  assert.equal((await post({})).status, 401);
  assert.equal((await post(acmeQ)).status, 403);
  assert.equal((await post(ingestOnly)).status, 200);
});

test('JWKS (ES256, RS256): key-signed tokens accepted, HS256 dev tokens refused, unknown kid refused', async () => {
  const opts = { sub: 'ev-1', tenant: 'acme', scopes: ['ingest' as const], ttlSeconds: 60, issuer: 'geoflux' };
  const good = await mintKeyToken(privateKey, 'ES256', 'k1', opts);
  const c = await DriverClient.connect(jwksEnv.gw.url, good);
  assert.equal((await c.send(ping('ev-1'))).count, 1);
  await c.close();
  const rc = await DriverClient.connect(jwksEnv.gw.url, await mintKeyToken(rsaKey, 'RS256', 'r1', { ...opts, sub: 'ev-2' }));
  assert.equal((await rc.send(ping('ev-2'))).count, 1);
  await rc.close();
  assert.equal((await refused(jwksEnv.gw.url, await token('ev-1', ['ingest']))).status, 401);
  assert.equal((await refused(jwksEnv.gw.url, await mintKeyToken(privateKey, 'ES256', 'other', opts))).status, 401);
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  assert.equal((await refused(jwksEnv.gw.url, await mintKeyToken(other.privateKey, 'ES256', 'k1', opts))).status, 401);
});
