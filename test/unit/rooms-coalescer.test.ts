import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCoalescer } from '../../src/rooms/coalescer.js';
import { entityRoom, parseRoom, roomName, tilesOfPoint } from '../../src/rooms/room-names.js';
import { cellOf } from '../../src/geo/tiles.js';

const P = { lat: 41.1496, lon: -8.611 };
const Q = { lat: 41.1496, lon: -8.551 }; // another z13 cell
const pos = (id: string, p: { lat: number; lon: number }, ts: number) => ({ tenant: 'acme', id, lat: p.lat, lon: p.lon, ts });

test('tilesOfPoint matches tileOf at every zoom', () => {
  const tiles = tilesOfPoint(P.lon, P.lat, 10, 18);
  assert.equal(tiles.length, 9);
  tiles.forEach((t, i) => assert.equal(t, cellOf(P.lon, P.lat, 10 + i)));
});

test('room names parse back; entity rooms never look like tiles', () => {
  assert.deepEqual(parseRoom(roomName('acme', '15/1/2')), { kind: 'tile', tenant: 'acme', tile: '15/1/2', z: 15 });
  assert.deepEqual(parseRoom(entityRoom('acme', 'a:b/1')), { kind: 'entity', tenant: 'acme', id: 'a:b/1' });
  assert.equal(parseRoom('Xc9-socketid'), undefined);
});

test('latest state wins per entity and only active rooms accumulate', () => {
  const tile = cellOf(P.lon, P.lat, 15);
  const active = new Set([roomName('acme', tile)]);
  const c = createCoalescer({ minZoom: 12, maxZoom: 18, isActive: (r) => active.has(r) });
  c.moved([{ now: pos('a', P, 2) }, { now: pos('a', P, 1) }, { now: pos('b', P, 5) }]);
  c.moved([{ now: pos('a', P, 3) }]);
  const { tiles, entities } = c.take();
  assert.equal(tiles.length, 1);
  assert.equal(tiles[0]!.tile, tile);
  assert.deepEqual(tiles[0]!.updates.map((u) => [u.id, u.ts]).sort(), [['a', 3], ['b', 5]]);
  assert.deepEqual(entities, []);
  assert.deepEqual(c.take().tiles, [], 'take() clears');
});

test('moving out of a tile is a left there; coming back in the same interval cancels it', () => {
  const tp = cellOf(P.lon, P.lat, 15), tq = cellOf(Q.lon, Q.lat, 15);
  const active = new Set([roomName('acme', tp), roomName('acme', tq)]);
  const c = createCoalescer({ minZoom: 12, maxZoom: 18, isActive: (r) => active.has(r) });
  c.moved([{ now: pos('a', Q, 2), prev: P }]);
  let f = c.take().tiles;
  const byTile = new Map(f.map((x) => [x.tile, x]));
  assert.deepEqual(byTile.get(tp)?.left, [{ id: 'a', reason: 'moved', ts: 2 }]);
  assert.deepEqual(byTile.get(tp)?.updates, []);
  assert.deepEqual(byTile.get(tq)?.updates.map((u) => u.id), ['a']);
  c.moved([{ now: pos('a', P, 3), prev: Q }, { now: pos('a', Q, 4), prev: P }, { now: pos('a', P, 5), prev: Q }]);
  f = c.take().tiles;
  const p = f.find((x) => x.tile === tp)!;
  assert.deepEqual(p.left, []);
  assert.deepEqual(p.updates.map((u) => u.ts), [5]);
  assert.deepEqual(f.find((x) => x.tile === tq)!.left.map((l) => l.id), ['a']);
});

test('expired entities leave every active tile and followed-entity room', () => {
  const tp = cellOf(P.lon, P.lat, 14);
  const active = new Set([roomName('acme', tp), entityRoom('acme', 'a')]);
  const c = createCoalescer({ minZoom: 12, maxZoom: 18, isActive: (r) => active.has(r) });
  c.moved([{ now: pos('a', P, 1) }]);
  c.expired([pos('a', P, 1)], 99);
  const { tiles, entities } = c.take();
  assert.deepEqual(tiles[0]!.updates, []);
  assert.deepEqual(tiles[0]!.left, [{ id: 'a', reason: 'expired', ts: 99 }]);
  assert.deepEqual(entities, [{ room: entityRoom('acme', 'a'), id: 'a', gone: true }]);
});

test('a room gets at most one frame per interval; a quiet room is sent at once', () => {
  const tile = cellOf(P.lon, P.lat, 15);
  const room = roomName('acme', tile);
  const c = createCoalescer({ minZoom: 15, maxZoom: 15, isActive: (r) => r === room || r === entityRoom('acme', 'a') });
  c.moved([{ now: pos('a', P, 1) }]);
  let f = c.take(1000, 25);
  assert.equal(f.tiles.length, 1, 'first change after a quiet period: sent at once');
  assert.equal(f.entities.length, 1);
  c.moved([{ now: pos('a', P, 2) }]);
  c.moved([{ now: pos('a', P, 3) }]);
  f = c.take(1010, 25);
  assert.deepEqual(f.tiles, [], 'within the interval: held back');
  assert.deepEqual(f.entities, []);
  assert.equal(c.pendingRooms(), 2);
  f = c.take(1025, 25);
  assert.deepEqual(f.tiles[0]!.updates.map((u) => u.ts), [3], 'then one frame with the latest state');
  assert.equal(f.entities[0]!.update?.ts, 3);
  assert.equal(c.pendingRooms(), 0);
  // Quiet again for an interval: the next change is sent at once.
  c.moved([{ now: pos('a', P, 4) }]);
  assert.equal(c.take(1051, 25).tiles.length, 1);
});

test('a frame carries when the gateway received its oldest ping (ping → frame metric)', () => {
  const tile = cellOf(P.lon, P.lat, 15);
  const room = roomName('acme', tile);
  const c = createCoalescer({ minZoom: 15, maxZoom: 15, isActive: (r) => r === room });
  c.moved([{ now: pos('a', P, 2), rx: 5000 }, { now: pos('b', P, 1), rx: 4990 }]);
  c.moved([{ now: pos('a', P, 3), rx: 5010 }]);
  const [f] = c.take(6000, 25).tiles;
  assert.equal(f!.oldestRx, 4990);
  c.moved([{ now: pos('a', P, 4) }]);
  assert.equal(c.take(7000, 25).tiles[0]!.oldestRx, undefined, 'unknown when no move says');
});

test('interest: a tenant nobody watches gets nothing; watched zooms give the same frames as checking every zoom', () => {
  const t13 = cellOf(P.lon, P.lat, 13), q15 = cellOf(Q.lon, Q.lat, 15), p15 = cellOf(P.lon, P.lat, 15);
  const active = new Set([roomName('acme', t13), roomName('acme', p15), roomName('acme', q15), entityRoom('acme', 'a')]);
  const isActive = (r: string): boolean => active.has(r);
  const moves = [{ now: pos('a', Q, 2), prev: P }, { now: pos('b', P, 3) }, { now: { ...pos('c', P, 4), tenant: 'other' } }];
  const all = createCoalescer({ minZoom: 12, maxZoom: 18, isActive });
  const some = createCoalescer({
    minZoom: 12, maxZoom: 18, isActive,
    interest: (tenant) => (tenant === 'acme' ? { zooms: [13, 15], entities: true } : undefined),
  });
  all.moved(moves);
  some.moved(moves);
  const norm = (f: ReturnType<typeof all.take>) => JSON.stringify({
    tiles: f.tiles.map((x) => ({ ...x, since: 0 })).sort((x, y) => x.room.localeCompare(y.room)),
    entities: f.entities,
  });
  const a = all.take(), s = some.take();
  assert.equal(norm(s), norm(a));
  assert.ok(a.tiles.some((x) => x.tile === p15 && x.left.length === 1), 'a left its previous z15 tile');
  const none = createCoalescer({ minZoom: 12, maxZoom: 18, isActive, interest: () => undefined });
  none.moved(moves);
  assert.equal(none.pendingRooms(), 0);
});
