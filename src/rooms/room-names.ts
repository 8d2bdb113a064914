import type { Tile } from '../geo/tiles.js';
import { tileKey, tileOf } from '../geo/tiles.js';

/** Room of one tile of one tenant: `${tenant}:${z/x/y}`. */
export function roomName(tenant: string, tile: string): string {
  return `${tenant}:${tile}`;
}

/** Room of one followed entity: `${tenant}#e:${id}` (`#` never appears in tile rooms). */
export function entityRoom(tenant: string, id: string): string {
  return `${tenant}#e:${id}`;
}

export type ParsedRoom =
  | { kind: 'tile'; tenant: string; tile: string; z: number }
  | { kind: 'entity'; tenant: string; id: string };

/** Parses a room name made by roomName/entityRoom; undefined for socket ids and others. */
export function parseRoom(room: string): ParsedRoom | undefined {
  const e = room.indexOf('#e:');
  if (e > 0) return { kind: 'entity', tenant: room.slice(0, e), id: room.slice(e + 3) };
  const c = room.indexOf(':');
  if (c <= 0) return undefined;
  const tile = room.slice(c + 1);
  const m = /^(\d{1,2})\/\d+\/\d+$/.exec(tile);
  if (!m) return undefined;
  return { kind: 'tile', tenant: room.slice(0, c), tile, z: Number(m[1]) };
}

/** The ancestor of a tile at a lower (or equal) zoom. */
export function ancestor(t: Tile, z: number): Tile {
  const k = t.z - z;
  if (k <= 0) return t;
  return { z, x: Math.floor(t.x / 2 ** k), y: Math.floor(t.y / 2 ** k) };
}

/** Tile keys of a point for zooms minZ..maxZ (one tileOf, then ancestors). */
export function tilesOfPoint(lon: number, lat: number, minZ: number, maxZ: number): string[] {
  const out: string[] = [];
  if (minZ > maxZ) return out;
  const deepest = tileOf(lon, lat, maxZ);
  for (let z = minZ; z <= maxZ; z++) out.push(tileKey(ancestor(deepest, z)));
  return out;
}
