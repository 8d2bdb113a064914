import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeAccepted } from '../../src/store/redis/codec.js';
import { decodeEntry, toStaged, WINDOW_MS } from '../../workers/entry.js';
import { PoisonEntryError, isPoison, isTransient, backoffMs } from '../../workers/errors.js';
import { copyLine, uniqueSorted, windowGroups, windowLines } from '../../workers/pg-writer.js';
import type { AcceptedPing } from '../../src/protocol/ping.js';

const ping: AcceptedPing = { tenant: 'acme', id: 'car-1', ts: 1_700_000_012_345, seq: 7, lat: 41.1, lon: -8.6, rx: 1, cell: '13/3900/3066', speed: 3.5, status: 'on\ttrip\\x' };

test('decodeEntry: a good entry becomes a staged ping with its window', () => {
  const s = decodeEntry(encodeAccepted(ping));
  assert.equal(s.win, 1_700_000_010_000);
  assert.equal(s.win % WINDOW_MS, 0);
  assert.deepEqual([s.cz, s.cx, s.cy, s.seq, s.heading], [13, 3900, 3066, 7, null]);
  assert.equal(toStaged({ ...ping, seq: undefined }).seq, -1);
});

test('decodeEntry: every kind of bad entry is poison (class, not message)', () => {
  const bad: unknown[] = [
    undefined, Buffer.from([0xc1]), encodeAccepted({ x: 1 } as unknown as AcceptedPing),
    encodeAccepted({ ...ping, tenant: 'bad tenant!' }), encodeAccepted({ ...ping, id: '' }), encodeAccepted({ ...ping, ts: 1.5 }),
    encodeAccepted({ ...ping, lat: 91 }), encodeAccepted({ ...ping, lon: Number.NaN }), encodeAccepted({ ...ping, cell: '13/x/1' }),
    encodeAccepted({ ...ping, speed: 'fast' as unknown as number }), encodeAccepted({ ...ping, kind: 'k'.repeat(40) }), encodeAccepted({ ...ping, seq: -2 }),
  ];
  for (const b of bad) {
    assert.throws(() => decodeEntry(b as Buffer), (e: unknown) => isPoison(e) && e instanceof PoisonEntryError);
  }
});

test('isTransient: SQLSTATE classes and socket errors retry; poison never', () => {
  assert.equal(isTransient(Object.assign(new Error('x'), { code: '57P01' })), true); // admin shutdown
  assert.equal(isTransient(Object.assign(new Error('x'), { code: '08006' })), true); // connection failure
  assert.equal(isTransient(Object.assign(new Error('x'), { code: '40P01' })), true); // deadlock
  assert.equal(isTransient(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), true);
  assert.equal(isTransient(Object.assign(new Error('x'), { code: '42P01' })), true); // table missing: not migrated yet
  assert.equal(isTransient(Object.assign(new Error('x'), { code: '22P02' })), false); // bad data
  assert.equal(isTransient(Object.assign(new Error('x'), { code: '23514' })), false); // check violation
  assert.equal(isTransient(new PoisonEntryError('x')), false);
});

test('backoffMs grows, is capped and jittered', () => {
  assert.equal(backoffMs(0, 100, 10_000, () => 0), 50);
  assert.equal(backoffMs(3, 100, 10_000, () => 1), 800);
  assert.equal(backoffMs(50, 100, 10_000, () => 1), 10_000);
});

test('uniqueSorted keeps one ping per key, sorted; copyLine escapes text', () => {
  const a = toStaged(ping), b = toStaged({ ...ping, ts: ping.ts - 1 }), c = toStaged({ ...ping, id: 'a-0' });
  const u = uniqueSorted([a, b, a, c, b]);
  assert.deepEqual(u.map((p) => `${p.id}@${p.ts}`), [`a-0@${ping.ts}`, `car-1@${ping.ts - 1}`, `car-1@${ping.ts}`]);
  const line = copyLine(a);
  assert.ok(line.endsWith('\n'));
  assert.equal(line.split('\t').length, 16);
  assert.ok(line.includes('on\\ttrip\\\\x'));
  assert.ok(line.includes('\t\\N\t')); // missing heading
});

test('windowGroups / windowLines: one COPY line per entity, window and cell, pings as parallel arrays', () => {
  const w0 = ping.ts - (ping.ts % 10_000);
  const a = toStaged({ ...ping, ts: w0 + 1, seq: 1, speed: 2.5 });
  const b = toStaged({ ...ping, ts: w0 + 2, seq: 2, speed: undefined, cell: '13/1/2' });
  const c = toStaged({ ...ping, ts: w0 + 3, seq: 3, speed: 1e-7 });
  const d = toStaged({ ...ping, ts: w0 + 10_000, seq: 4 }); // next window
  const groups = windowGroups(uniqueSorted([d, c, b, a]));
  assert.deepEqual(groups.map((g) => [g.win - w0, g.pings.length]), [[0, 3], [10_000, 1]]);
  const lines = windowLines(groups[0]!).split('\n').filter(Boolean).map((l) => l.split('\t'));
  assert.equal(lines.length, 2, 'two cells');
  for (const l of lines) assert.equal(l.length, 25);
  const [first, second] = lines as [string[], string[]];
  assert.deepEqual(first.slice(7, 12), ['{1,3}', '{1,3}', '{2.5,1e-7}', `{${ping.lon},${ping.lon}}`, `{${ping.lat},${ping.lat}}`]);
  assert.deepEqual(second.slice(3, 9), ['13/1/2', '13', '1', '2', '{2}', '{2}']);
  assert.equal(second[9], '{NULL}', 'a missing speed');
  // The window's lowest and greatest key on every line; the latest fix of the line's own cell.
  for (const l of lines) assert.deepEqual([l[13], l[15]], ['1', '3']);
  assert.equal(first[17], '3');
  assert.equal(second[17], '2');
  // keep: only the pings not counted yet; none kept → no line.
  assert.equal(windowLines(groups[0]!, (p) => p.seq !== 2).split('\n').filter(Boolean).length, 1);
  assert.equal(windowLines(groups[0]!, () => false), '');
});
