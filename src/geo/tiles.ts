import { pointToTile, pointToTileFraction, tileToBBOX } from '@mapbox/tilebelt';
import { MAX_MERCATOR_LAT } from '../protocol/ping.js';

/** [west, south, east, north] in degrees. */
export type BBox = [number, number, number, number];
export interface Tile { z: number; x: number; y: number }

export const MAX_TILE_ZOOM = 22;

export function clampLat(lat: number): number {
  return Math.max(-MAX_MERCATOR_LAT, Math.min(MAX_MERCATOR_LAT, lat));
}

/** The Web Mercator tile containing a point (tile math by @mapbox/tilebelt). */
export function tileOf(lon: number, lat: number, z: number): Tile {
  const [x, y] = pointToTile(lon, clampLat(lat), z);
  const n = 2 ** z;
  // tilebelt returns x = n for lon = 180 exactly: wrap onto the first column.
  // ...and y = -1 at the clamped north edge: keep y inside the grid.
  return { z, x: ((x % n) + n) % n, y: Math.max(0, Math.min(y, n - 1)) };
}

export function tileKey(t: Tile): string {
  return `${t.z}/${t.x}/${t.y}`;
}

export function cellOf(lon: number, lat: number, z: number): string {
  return tileKey(tileOf(lon, lat, z));
}

/** Parses `z/x/y`; returns undefined when malformed or out of range. */
export function parseTile(s: string, maxZoom = MAX_TILE_ZOOM): Tile | undefined {
  const m = /^(\d{1,2})\/(\d{1,8})\/(\d{1,8})$/.exec(s);
  if (!m) return undefined;
  const z = Number(m[1]), x = Number(m[2]), y = Number(m[3]);
  if (z > maxZoom) return undefined;
  const n = 2 ** z;
  if (x >= n || y >= n) return undefined;
  return { z, x, y };
}

export function tileBBox(t: Tile): BBox {
  const [w, s, e, n] = tileToBBOX([t.x, t.y, t.z]);
  return [w, s, e, n];
}

/**
 * How a bbox's east and south edges are treated: `closed` (queries: a point exactly on the edge
 * is inside, so the tile beyond a tile-aligned edge is searched too) or `half-open` (viewports:
 * a tile-aligned view is exactly its tiles, not one more row and column).
 */
export type BBoxEdges = 'closed' | 'half-open';

/** Tolerance, in tiles, for edges computed from tile bounds (tileBBox's floating point). */
const EDGE_EPS = 1e-9;

/**
 * Tiles at zoom z covering a bbox. A bbox with west > east crosses the antimeridian; east = 180
 * is the last column (not the first, where tileOf puts the point lon = 180).
 * Returns undefined when more than maxTiles would be needed.
 */
export function tilesInBBox(bbox: BBox, z: number, maxTiles = 4096, edges: BBoxEdges = 'closed'): Tile[] | undefined {
  const [w, s, e, n] = bbox;
  const side = 2 ** z;
  // x without tilebelt's wrap (which maps lon = 180 onto column 0); y from tilebelt.
  const xOf = (lon: number): number => side * (lon / 360 + 0.5);
  const yOf = (lat: number): number => pointToTileFraction(0, clampLat(lat), z)[1];
  const low = (f: number): number => Math.floor(f + EDGE_EPS);
  const high = (f: number): number => (edges === 'closed' ? Math.floor(f) : Math.ceil(f - EDGE_EPS) - 1);
  const clamp = (v: number): number => Math.max(0, Math.min(side - 1, v));
  const xs: number[] = [];
  if (w <= e) {
    const x0 = clamp(low(xOf(w)));
    const x1 = Math.max(x0, clamp(high(xOf(e))));
    for (let x = x0; x <= x1; x++) xs.push(x);
  } else {
    // West part up to the antimeridian, then east part from it (either may be empty: w = 180, e = -180).
    for (let x = Math.max(0, low(xOf(w))); x < side; x++) xs.push(x);
    for (let x = 0; x <= Math.min(side - 1, high(xOf(e))); x++) xs.push(x);
  }
  const y0 = clamp(low(yOf(n)));
  const y1 = Math.max(y0, clamp(high(yOf(s))));
  const rows = y1 - y0 + 1;
  if (xs.length * rows > maxTiles) return undefined;
  const out: Tile[] = [];
  for (const x of xs) for (let y = y0; y <= y1; y++) out.push({ z, x, y });
  return out;
}

const EARTH_RADIUS_M = 6372797.560856; // the radius Redis GEO uses

/** Great-circle distance in metres (haversine, same constant as Redis GEO). */
export function haversineMeters(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/**
 * A bbox that contains the circle (lat, lon, radius). Near the poles it spans all
 * longitudes; across the antimeridian it has west > east.
 */
export function circleBBox(lat: number, lon: number, radiusM: number): BBox {
  const dLat = (radiusM / EARTH_RADIUS_M) * (180 / Math.PI);
  const s = Math.max(-90, lat - dLat);
  const n = Math.min(90, lat + dLat);
  const maxAbsLat = Math.max(Math.abs(s), Math.abs(n));
  if (maxAbsLat >= 89.9) return [-180, s, 180, n];
  const dLon = dLat / Math.cos(maxAbsLat * Math.PI / 180);
  if (dLon >= 180) return [-180, s, 180, n];
  let w = lon - dLon, e = lon + dLon;
  if (w < -180) w += 360;
  if (e > 180) e -= 360;
  return [w, s, e, n];
}
