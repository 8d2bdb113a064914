import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../../src/ingest/rate-limit.js';
import { decodeFrame } from '../../src/ingest/decode.js';
import { validatePing } from '../../src/ingest/validate.js';
import { pack } from 'msgpackr';
import type { Principal } from '../../src/auth/tokens.js';

test('token bucket: burst, refill, partial grants, abuse after sustained debt, debt decays', () => {
  const b = new TokenBucket(10, 20, 50, 0);
  assert.equal(b.take(15, 0), 15);
  assert.equal(b.take(15, 0), 5);
  assert.equal(b.abusive, false);
  assert.equal(b.take(5, 500), 5); // 0.5 s → 5 tokens back
  assert.equal(b.take(60, 500), 0);
  assert.equal(b.abusive, true); // debt 10 + 60 > 50
  assert.equal(b.take(0, 10_000), 0);
  assert.equal(b.abusive, false); // decayed
  assert.equal(b.take(100, 10_000), 20); // capped at the burst
});

const driver: Principal = { sub: 'car-1', tenant: 'acme', scopes: new Set(['ingest']), exp: 0, fleet: false, follow: [] };
const fleet: Principal = { ...driver, sub: 'gw', fleet: true };
const limits = { maxFutureMs: 60_000, maxAgeMs: 86_400_000 };

test('decode: JSON and MessagePack single/batch frames decode the same; errors are BAD_FRAME / BATCH_TOO_LARGE', () => {
  const p = { id: 'car-1', lat: 1.5, lon: 2.5, ts: 1700000000000, seq: 3, meta: { a: 'b', n: 1, t: true, z: null } };
  assert.deepEqual(decodeFrame(new TextEncoder().encode(JSON.stringify(p)), false, 10), [p]);
  assert.deepEqual(decodeFrame(pack(p), true, 10), [p]);
  assert.deepEqual(decodeFrame(pack([p, p]), true, 10), decodeFrame(new TextEncoder().encode(JSON.stringify([p, p])), false, 10));
  assert.throws(() => decodeFrame(new TextEncoder().encode('{'), false, 10), { code: 'BAD_FRAME' });
  assert.throws(() => decodeFrame(new Uint8Array([0x92, 0x01]), true, 10), { code: 'BAD_FRAME' });
  assert.throws(() => decodeFrame(pack([]), true, 10), { code: 'BAD_FRAME' });
  assert.throws(() => decodeFrame(pack([p, p, p]), true, 2), { code: 'BATCH_TOO_LARGE' });
});

test('validate: codes per rule, fleet tokens publish any id, echoes are bounded', () => {
  const now = 1700000000000;
  const ok = { id: 'car-1', lat: 1, lon: 2, ts: now };
  assert.equal(validatePing(ok, driver, now, limits).ok, true);
  const code = (raw: unknown, who = driver) => { const v = validatePing(raw, who, now, limits); return v.ok ? 'OK' : v.code; };
  assert.equal(code({ ...ok, lat: 85.06 }), 'INVALID_COORDINATES');
  assert.equal(code({ ...ok, lon: Number.NaN }), 'INVALID_COORDINATES');
  assert.equal(code({ ...ok, speed: -1 }), 'INVALID_PING');
  assert.equal(code({ ...ok, extra: 1 }), 'INVALID_PING');
  assert.equal(code({ ...ok, ts: now + 61_000 }), 'TS_IN_FUTURE');
  assert.equal(code({ ...ok, ts: now - 86_400_001 }), 'TS_TOO_OLD');
  assert.equal(code({ ...ok, id: 'car-2' }), 'NOT_YOUR_ENTITY');
  assert.equal(code({ ...ok, id: 'car-2' }, fleet), 'OK');
  assert.equal(code('string'), 'INVALID_PING');
  const v = validatePing({ ...ok, id: 'x'.repeat(10_000) }, driver, now, limits);
  assert.ok(!v.ok && v.id!.length === 64);
});
