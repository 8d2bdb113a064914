import type { Redis } from 'ioredis';
import type { Keys } from '../store/redis/keys.js';
import { parseCellMember } from '../store/redis/keys.js';
import { decodeAccepted } from '../store/redis/codec.js';
import type { EntityUpdate, TileAggregate } from '../protocol/rooms.js';
import type { AcceptedPing } from '../protocol/ping.js';
import { parseTile, tileKey, tileOf, type Tile } from '../geo/tiles.js';
import { ancestor } from './room-names.js';

export interface RoomReaderOptions {
  ingestZoom: number;
  entityTtlSeconds: number;
  aggregateDepth: number;
}

/** Reads room snapshots and aggregates from the live cells, never returning stale entities. */
export interface RoomReader {
  /** Live entities inside one tile (any zoom). */
  snapshot(tenant: string, tile: string): Promise<EntityUpdate[]>;
  /** Counts per sub-tile for tiles (below the aggregate zoom) of one tenant. */
  aggregates(tenant: string, tiles: readonly string[]): Promise<Map<string, TileAggregate>>;
  /** Latest live state of one entity, if live. */
  entity(tenant: string, id: string): Promise<EntityUpdate | undefined>;
}

export function toUpdate(p: Pick<AcceptedPing, 'id' | 'lat' | 'lon' | 'ts' | 'speed' | 'heading' | 'kind' | 'status'>): EntityUpdate {
  const u: EntityUpdate = { id: p.id, lat: p.lat, lon: p.lon, ts: p.ts };
  if (p.speed !== undefined) u.speed = p.speed;
  if (p.heading !== undefined) u.heading = p.heading;
  if (p.kind !== undefined) u.kind = p.kind;
  if (p.status !== undefined) u.status = p.status;
  return u;
}

/** Up to this many cells are listed directly; beyond, the active-cell set is scanned. */
const MAX_LISTED_CELLS = 256;

const inside = (t: Tile, parent: Tile): boolean => {
  const a = ancestor(t, parent.z);
  return a.x === parent.x && a.y === parent.y;
};

export function createRoomReader(redis: Redis, keys: Keys, opts: RoomReaderOptions): RoomReader {
  const cutoff = (): number => Date.now() - opts.entityTtlSeconds * 1000;

  /**
   * Ingest cells of a tenant that may hold live entities inside any of `tiles`. A tile at or
   * above the ingest zoom lies in one cell; a lower tile covers 4^(ingestZoom - z) cells: few
   * are listed directly, many are found among the recently active cells.
   */
  async function cellsIn(tenant: string, tiles: readonly Tile[], min = cutoff()): Promise<Tile[]> {
    const out = new Map<string, Tile>();
    let children = 0;
    for (const t of tiles) children += t.z >= opts.ingestZoom ? 1 : 4 ** (opts.ingestZoom - t.z);
    if (children <= MAX_LISTED_CELLS) {
      for (const t of tiles) {
        if (t.z >= opts.ingestZoom) {
          const c = ancestor(t, opts.ingestZoom);
          out.set(tileKey(c), c);
          continue;
        }
        const k = 2 ** (opts.ingestZoom - t.z);
        for (let x = t.x * k; x < (t.x + 1) * k; x++) {
          for (let y = t.y * k; y < (t.y + 1) * k; y++) out.set(`${opts.ingestZoom}/${x}/${y}`, { z: opts.ingestZoom, x, y });
        }
      }
      return [...out.values()];
    }
    const members = await redis.zrangebyscore(keys.activeCells, min, '+inf');
    for (const m of members) {
      const { tenant: t, cell } = parseCellMember(m);
      if (t !== tenant) continue;
      const c = parseTile(cell);
      if (c && c.z === opts.ingestZoom && tiles.some((tile) => inside(c, tile))) out.set(cell, c);
    }
    return [...out.values()];
  }
  const cellsOf = (tenant: string, tile: Tile): Promise<Tile[]> => cellsIn(tenant, [tile]);

  async function liveIds(tenant: string, cells: Tile[]): Promise<string[]> {
    if (cells.length === 0) return [];
    const min = cutoff();
    const pipe = redis.pipeline();
    for (const c of cells) pipe.zrangebyscore(keys.cell(tenant, tileKey(c)).seen, min, '+inf');
    const res = await pipe.exec();
    const ids: string[] = [];
    for (const [err, list] of res ?? []) {
      if (err) throw err;
      for (const id of list as string[]) ids.push(id);
    }
    return ids;
  }

  /**
   * Latest packed state of entities. The entity key is a hash with field `p` (packed ping);
   * older layouts stored the packed ping as a plain string: both are read.
   */
  async function packedStates(tenant: string, ids: readonly string[]): Promise<(Buffer | null)[]> {
    if (ids.length === 0) return [];
    const pipe = redis.pipeline();
    for (const id of ids) pipe.hgetBuffer(keys.entity(tenant, id), 'p');
    const res = (await pipe.exec()) ?? [];
    const out: (Buffer | null)[] = [];
    const retry: number[] = [];
    res.forEach(([err, b], i) => {
      if (err) {
        if (!/WRONGTYPE/.test(String((err as Error).message))) throw err;
        retry.push(i);
        out.push(null);
      } else out.push((b as Buffer | null) ?? null);
    });
    if (retry.length > 0) {
      const bufs = await redis.mgetBuffer(...retry.map((i) => keys.entity(tenant, ids[i]!)));
      retry.forEach((i, j) => { out[i] = bufs[j] ?? null; });
    }
    return out;
  }

  async function states(tenant: string, ids: string[]): Promise<AcceptedPing[]> {
    const out: AcceptedPing[] = [];
    for (let i = 0; i < ids.length; i += 500) {
      for (const b of await packedStates(tenant, ids.slice(i, i + 500))) if (b) out.push(decodeAccepted(b));
    }
    return out;
  }

  return {
    async snapshot(tenant, key) {
      const tile = parseTile(key);
      if (!tile) return [];
      const ids = await liveIds(tenant, await cellsOf(tenant, tile));
      const list = await states(tenant, ids);
      const out: EntityUpdate[] = [];
      for (const p of list) if (inside(tileOf(p.lon, p.lat, tile.z), tile)) out.push(toUpdate(p));
      return out;
    },

    async aggregates(tenant, tileKeys) {
      const result = new Map<string, TileAggregate>();
      const tiles = tileKeys.map((k) => parseTile(k)).filter((t): t is Tile => t !== undefined);
      if (tiles.length === 0) return result;
      const ts = Date.now();
      const min = ts - opts.entityTtlSeconds * 1000;
      const cells = await cellsIn(tenant, tiles, min);
      const counts: number[] = [];
      if (cells.length > 0) {
        const pipe = redis.pipeline();
        for (const c of cells) pipe.zcount(keys.cell(tenant, tileKey(c)).seen, min, '+inf');
        for (const [err, n] of (await pipe.exec()) ?? []) {
          if (err) throw err;
          counts.push(Number(n));
        }
      }
      for (const tile of tiles) {
        const subZ = Math.min(tile.z + opts.aggregateDepth, opts.ingestZoom);
        const bySub = new Map<string, [number, number, number]>();
        let total = 0;
        cells.forEach((c, i) => {
          const n = counts[i] ?? 0;
          if (n === 0 || !inside(c, tile)) return;
          const s = ancestor(c, subZ);
          const k = `${s.x}/${s.y}`;
          const e = bySub.get(k);
          if (e) e[2] += n; else bySub.set(k, [s.x, s.y, n]);
          total += n;
        });
        result.set(tileKey(tile), { tile: tileKey(tile), z: subZ, cells: [...bySub.values()], total, ts });
      }
      return result;
    },

    async entity(tenant, id) {
      const [b] = await packedStates(tenant, [id]);
      return b ? toUpdate(decodeAccepted(b)) : undefined;
    },
  };
}
