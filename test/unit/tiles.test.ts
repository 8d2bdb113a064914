import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tileOf, tileKey, parseTile, tilesInBBox, circleBBox, haversineMeters, tileBBox } from '../../src/geo/tiles.js';

// Expected tiles computed independently with the OSM slippy-map formula.
const KNOWN: [string, number, number, number, string][] = [
  ['London', 51.5074, -0.1278, 10, '10/511/340'],
  ['Porto', 41.1496, -8.611, 13, '13/3900/3066'],
  ['Sydney', -33.8688, 151.2093, 12, '12/3768/2457'],
  ['New York', 40.7128, -74.006, 14, '14/4823/6160'],
  ['Tokyo', 35.6762, 139.6503, 16, '16/58190/25807'],
  ['Null Island', 0.0001, 0.0001, 1, '1/1/0'],
  ['Fiji, east of the antimeridian', -17.8, 179.99, 8, '8/255/140'],
  ['Fiji, west of the antimeridian', -17.8, -179.99, 8, '8/0/140'],
];

test('tileOf matches known tiles of real places', () => {
  for (const [name, lat, lon, z, expected] of KNOWN) assert.equal(tileKey(tileOf(lon, lat, z)), expected, name);
});

test('tileOf clamps the poles and wraps lon=180', () => {
  assert.equal(tileKey(tileOf(0, 89.9, 4)), '4/8/0');
  assert.equal(tileKey(tileOf(0, -89.9, 4)), '4/8/15');
  assert.equal(tileKey(tileOf(180, 0, 4)), '4/0/8');
});

test('a tile contains its own points', () => {
  for (const [, lat, lon, z] of KNOWN) {
    const [w, s, e, n] = tileBBox(tileOf(lon, lat, z));
    assert.ok(lon >= w && lon <= e && lat >= s && lat <= n);
  }
});

test('parseTile validates format and range', () => {
  assert.deepEqual(parseTile('13/3900/3066'), { z: 13, x: 3900, y: 3066 });
  for (const bad of ['', '1/2', 'a/b/c', '2/4/0', '2/0/4', '23/0/0', '1/-1/0', '1/1/1/1']) assert.equal(parseTile(bad), undefined, bad);
});

test('tilesInBBox covers a bbox and crosses the antimeridian', () => {
  const t = tilesInBBox([-0.2, 51.4, 0.1, 51.6], 10)!.map(tileKey);
  assert.ok(t.includes('10/511/340'));
  const across = tilesInBBox([179.5, -18, -179.5, -17.5], 8)!.map(tileKey);
  assert.ok(across.includes('8/255/140') && across.includes('8/0/140'));
  assert.equal(tilesInBBox([-180, -85, 180, 85], 10, 100), undefined);
});

test('tilesInBBox at the antimeridian: east = 180 is the last column, west = 180 starts at -180', () => {
  // The whole world at z3: 8 × 8 tiles (tileOf(180) is column 0, which used to make this one column).
  assert.equal(tilesInBBox([-180, -85, 180, 85], 3)!.length, 64);
  const east = tilesInBBox([170, 0, 180, 10], 6)!.map(tileKey);
  assert.deepEqual([...new Set(east.map((k) => k.split('/')[1]))], ['62', '63']);
  // [180, …, -170]: from the antimeridian eastwards, columns 0 and 1, not the whole world.
  assert.deepEqual([...new Set(tilesInBBox([180, 0, -170, 10], 6)!.map((t) => t.x))], [0, 1]);
  // The last column of a zoom is found by a tile= query too (within uses its bbox).
  const last = tileBBox({ z: 13, x: 8191, y: 3000 });
  assert.deepEqual(tilesInBBox(last, 13)!.map(tileKey).filter((k) => k.startsWith('13/8191/')).length > 0, true);
});

test('tilesInBBox half-open edges: a tile-aligned view is exactly its tiles', () => {
  const nw = tileBBox({ z: 10, x: 100, y: 200 });
  const se = tileBBox({ z: 10, x: 107, y: 207 });
  const view: [number, number, number, number] = [nw[0], se[1], se[2], nw[3]];
  const tiles = tilesInBBox(view, 10, 64, 'half-open')!;
  assert.equal(tiles.length, 64);
  assert.deepEqual([Math.min(...tiles.map((t) => t.x)), Math.max(...tiles.map((t) => t.x))], [100, 107]);
  assert.deepEqual([Math.min(...tiles.map((t) => t.y)), Math.max(...tiles.map((t) => t.y))], [200, 207]);
  assert.deepEqual(tilesInBBox(tileBBox({ z: 10, x: 5, y: 5 }), 10, 4, 'half-open')!.map(tileKey), ['10/5/5']);
  // A degenerate (point) view is still one tile; closed edges (queries) keep the boundary tiles.
  assert.equal(tilesInBBox([10, 10, 10, 10], 10, 4, 'half-open')!.length, 1);
  assert.ok(tilesInBBox(view, 10)!.length > 64);
});

test('circleBBox and haversine agree', () => {
  const [w, s, e, n] = circleBBox(41.15, -8.61, 1000);
  assert.ok(Math.abs(haversineMeters(41.15, -8.61, n, -8.61) - 1000) < 1);
  assert.ok(Math.abs(haversineMeters(41.15, -8.61, s, -8.61) - 1000) < 1);
  assert.ok(w < -8.61 && e > -8.61);
  const across = circleBBox(0, 179.999, 5000);
  assert.ok(across[0] > across[2], 'crosses the antimeridian');
  const polar = circleBBox(89.95, 10, 20000);
  assert.equal(polar[0], -180);
  assert.equal(polar[2], 180);
});
