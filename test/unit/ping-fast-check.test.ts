import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import { isPlainValidPing, MAX_MERCATOR_LAT, pingSchema } from '../../src/protocol/ping.js';

const FIELDS = ['id', 'lat', 'lon', 'ts', 'seq', 'speed', 'heading', 'accuracy', 'kind', 'status'] as const;
const VALUES: unknown[] = [
  undefined, null, true, false, 0, -0, 1, -1, 0.5, 1.5, 42, 150, 150.0001, 360, 360.5, 100000, 100001, 180, -180, 180.000001,
  MAX_MERCATOR_LAT, -MAX_MERCATOR_LAT, MAX_MERCATOR_LAT + 1e-9, 90, -90.5, 1700000000000, 1700000000000.5, Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 2, 2 ** 60, -(2 ** 31), Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, '', 'a', 'car-1',
  'x'.repeat(32), 'x'.repeat(33), 'x'.repeat(64), 'x'.repeat(65), 'bad id!', 'ü', '12', [], [1], {}, { a: 1 },
];

let seed = 7;
const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
const valid = (): Record<string, unknown> => ({ id: 'car-1', lat: 38.7, lon: -9.1, ts: 1700000000000, seq: 3, speed: 12.5, heading: 90, accuracy: 5, kind: 'car', status: 'available' });

function candidate(): unknown {
  const shape = rand(20);
  if (shape === 0) return VALUES[rand(VALUES.length)];
  const p = valid();
  if (shape === 1) delete p[FIELDS[rand(4)]!]; // a required field missing
  const changes = 1 + rand(3);
  for (let i = 0; i < changes; i++) {
    const f = FIELDS[rand(FIELDS.length)]!;
    if (rand(4) === 0) delete p[f]; else p[f] = VALUES[rand(VALUES.length)];
  }
  if (rand(15) === 0) p[['extra', 'meta', '__x', 'constructor'][rand(4)]!] = VALUES[rand(VALUES.length)];
  if (rand(10) === 0) return unpack(pack(p)); // as the MessagePack decoder builds it
  if (rand(10) === 0) return JSON.parse(JSON.stringify(p));
  return p;
}

test('the compiled ping check agrees with the zod schema on generated valid and invalid pings', () => {
  let accepted = 0, refused = 0;
  for (let i = 0; i < 20_000; i++) {
    const c = candidate();
    const fast = isPlainValidPing(c);
    const slow = pingSchema.safeParse(c).success;
    const hasMeta = typeof c === 'object' && c !== null && 'meta' in c && (c as { meta?: unknown }).meta !== undefined;
    if (fast) assert.equal(slow, true, `fast check accepted what zod refuses: ${String(JSON.stringify(c))}`);
    else if (!hasMeta) assert.equal(slow, false, `fast check refused what zod accepts: ${String(JSON.stringify(c))}`);
    if (slow) accepted++; else refused++;
  }
  assert.ok(accepted > 2000 && refused > 2000, `both outcomes well covered (${accepted} valid, ${refused} invalid)`);
});

test('pings with meta, null-prototype objects and class instances go to zod (fast check says no)', () => {
  assert.equal(isPlainValidPing({ ...valid(), meta: { a: 1 } }), false);
  assert.equal(isPlainValidPing(Object.assign(Object.create(null), valid())), false);
  assert.equal(isPlainValidPing(valid()), true);
});
