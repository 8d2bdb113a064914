import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import { createHmacVerifier, createJwksVerifier, mintHmacToken, mintKeyToken, type MintOptions, type TokenVerifier } from '../../src/auth/tokens.js';
import { AppError } from '../../src/errors/app-error.js';

/** Token verification (fast-jwt): synchronous, the same answers as a promise, the claims a principal carries. */
const SECRET = 'a-test-secret-that-is-long-enough-0123456789';
const opts: MintOptions = { sub: 'car-1', tenant: 'acme', scopes: ['ingest', 'subscribe'], ttlSeconds: 60, issuer: 'geoflux' };

/** A call that verifies `tok` with `v` (for refusal()). */
const verifying = (v: TokenVerifier, tok: string) => (): unknown => v.verifySync(tok);

function refusal(fn: () => unknown): AppError {
  try { fn(); } catch (err) {
    assert.ok(err instanceof AppError, String(err));
    return err;
  }
  throw new Error('token was accepted');
}

test('HS256: a minted token verifies synchronously and as a promise, with its claims', async () => {
  const v = createHmacVerifier(SECRET, 'geoflux');
  const tok = await mintHmacToken(SECRET, { ...opts, fleet: true, follow: ['drv-7', 'drv-8'] });
  const p = v.verifySync(tok);
  assert.equal(p.sub, 'car-1');
  assert.equal(p.tenant, 'acme');
  assert.deepEqual([...p.scopes].sort(), ['ingest', 'subscribe']);
  assert.equal(p.fleet, true);
  assert.deepEqual(p.follow, ['drv-7', 'drv-8']);
  assert.ok(Math.abs(p.exp - (Date.now() + 60_000)) < 2000);
  assert.deepEqual(await v.verify(tok), p);
  // Verified twice (the second from fast-jwt's cache): the same principal.
  assert.deepEqual(v.verifySync(tok), p);
  assert.deepEqual((v.verifySync(await mintHmacToken(SECRET, opts))).follow, []);
});

test('HS256 refusals: missing, expired, other secret, other issuer, no exp, bad tenant, garbage', async () => {
  const v = createHmacVerifier(SECRET, 'geoflux');
  assert.equal(refusal(() => v.verifySync(undefined)).message, 'missing token');
  assert.equal(refusal(() => v.verifySync('')).message, 'missing token');
  assert.equal(refusal(() => v.verifySync(undefined)).code, 'UNAUTHORIZED');
  assert.equal(refusal(verifying(v, await mintHmacToken(SECRET, { ...opts, ttlSeconds: -60 }))).message, 'token expired');
  assert.equal(refusal(verifying(v, await mintHmacToken('another-secret-that-is-long-enough-0123', opts))).message, 'invalid token');
  assert.equal(refusal(verifying(v, await mintHmacToken(SECRET, { ...opts, issuer: 'evil' }))).message, 'invalid token');
  const noExp = createSigner({ key: SECRET, algorithm: 'HS256' })({ sub: 'car-1', tenant: 'acme', iss: 'geoflux', scope: 'ingest' });
  assert.equal(refusal(() => v.verifySync(noExp)).message, 'invalid token');
  assert.equal(refusal(verifying(v, await mintHmacToken(SECRET, { ...opts, tenant: 'bad tenant!' }))).message, 'token has no valid tenant claim');
  assert.equal(refusal(() => v.verifySync('not.a.jwt')).message, 'invalid token');
  await assert.rejects(v.verify('not.a.jwt'), (e: unknown) => e instanceof AppError && e.code === 'UNAUTHORIZED');
});

test('JWKS: kid picks the key; without kid each key of the algorithm is tried; unusable keys are ignored', async () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ec2 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const enc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const v = createJwksVerifier({
    keys: [
      { ...ec.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig' },
      { ...ec2.publicKey.export({ format: 'jwk' }), kid: 'k2' },
      { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'r1', alg: 'RS256' },
      { ...enc.publicKey.export({ format: 'jwk' }), kid: 'e1', use: 'enc' },
    ],
  }, 'geoflux');
  assert.equal(v.verifySync(await mintKeyToken(ec.privateKey, 'ES256', 'k1', opts)).sub, 'car-1');
  assert.equal(v.verifySync(await mintKeyToken(ec2.privateKey, 'ES256', 'k2', opts)).sub, 'car-1');
  assert.equal(v.verifySync(await mintKeyToken(rsa.privateKey, 'RS256', 'r1', opts)).sub, 'car-1');
  // PEM strings sign as well as key objects.
  const pem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  assert.equal(v.verifySync(await mintKeyToken(pem, 'ES256', 'k1', opts)).sub, 'car-1');
  // No kid: tried against k1 and k2.
  const noKid = createSigner({ key: pem, algorithm: 'ES256', noTimestamp: true })({ sub: 'car-2', tenant: 'acme', iss: 'geoflux', exp: Math.floor(Date.now() / 1000) + 60 });
  assert.equal(v.verifySync(noKid).sub, 'car-2');
  // The wrong key for a kid, an unknown kid, an encryption key, an HS256 token: refused.
  assert.equal(refusal(verifying(v, await mintKeyToken(ec2.privateKey, 'ES256', 'k1', opts))).message, 'invalid token');
  assert.equal(refusal(verifying(v, await mintKeyToken(ec.privateKey, 'ES256', 'nope', opts))).message, 'invalid token');
  assert.equal(refusal(verifying(v, await mintKeyToken(enc.privateKey, 'ES256', 'e1', opts))).message, 'invalid token');
  assert.equal(refusal(verifying(v, await mintHmacToken(SECRET, opts))).message, 'invalid token');
  assert.equal(refusal(verifying(v, await mintKeyToken(ec.privateKey, 'ES256', 'k1', { ...opts, ttlSeconds: -60 }))).message, 'token expired');
  assert.throws(() => createJwksVerifier({ keys: [{ ...enc.publicKey.export({ format: 'jwk' }), use: 'enc' }] }, 'geoflux'), /no ES256/);
});
