import { pointToTile, tileToBBOX } from '@mapbox/tilebelt';
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
 * Tiles at zoom z covering a bbox. A bbox with west > east crosses the antimeridian.
 * Returns undefined when more than maxTiles would be needed.
 */
export function tilesInBBox(bbox: BBox, z: number, maxTiles = 4096): Tile[] | undefined {
  const [w, s, e, n] = bbox;
  const nw = tileOf(w, n, z);
  const se = tileOf(e, s, z);
  const side = 2 ** z;
  const xs: number[] = [];
  if (w <= e) {
    for (let x = nw.x; x <= se.x; x++) xs.push(x);
  } else {
    for (let x = nw.x; x < side; x++) xs.push(x);
    for (let x = 0; x <= se.x; x++) xs.push(x);
  }
  const rows = se.y - nw.y + 1;
  if (xs.length * rows > maxTiles) return undefined;
  const out: Tile[] = [];
  for (const x of xs) for (let y = nw.y; y <= se.y; y++) out.push({ z, x, y });
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
