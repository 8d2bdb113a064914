import type { LiveMove, LivePosition } from '../protocol/live.js';
import type { EntityUpdate, LeftEntity } from '../protocol/rooms.js';
import { toUpdate } from './room-reader.js';
import { entityRoom, roomName, tilesOfPoint } from './room-names.js';

/** What one tile room gets in one coalescing interval. */
export interface TileFrame {
  room: string;
  tile: string;
  /** Latest state of each changed entity (one per id). */
  updates: EntityUpdate[];
  left: LeftEntity[];
}

/** What one followed-entity room gets in one interval. */
export interface EntityFrame {
  room: string;
  id: string;
  update?: EntityUpdate;
  gone?: boolean;
}

export interface CoalescerOptions {
  /** Lowest zoom of per-vehicle tile rooms (tiles below get aggregates instead). */
  minZoom: number;
  maxZoom: number;
  /** Whether some gateway has subscribers in the room; inactive rooms cost nothing. */
  isActive(room: string): boolean;
}

/**
 * Collects live changes per room between two flushes: latest state wins per entity, an entity
 * that moved out of a tile becomes a `left` there, one that came back cancels it.
 */
export interface Coalescer {
  moved(moves: readonly LiveMove[]): void;
  expired(gone: readonly LivePosition[], now?: number): void;
  /** Returns and clears what accumulated since the last call. */
  take(): { tiles: TileFrame[]; entities: EntityFrame[] };
  pendingRooms(): number;
}

interface TileAcc { tile: string; updates: Map<string, EntityUpdate>; left: Map<string, LeftEntity> }

export function createCoalescer(o: CoalescerOptions): Coalescer {
  let tiles = new Map<string, TileAcc>();
  let entities = new Map<string, EntityFrame>();

  const acc = (room: string, tile: string): TileAcc => {
    let a = tiles.get(room);
    if (!a) tiles.set(room, (a = { tile, updates: new Map(), left: new Map() }));
    return a;
  };

  return {
    moved(moves) {
      for (const m of moves) {
        const n = m.now;
        const u = toUpdate(n);
        const nowTiles = tilesOfPoint(n.lon, n.lat, o.minZoom, o.maxZoom);
        const prevTiles = m.prev ? tilesOfPoint(m.prev.lon, m.prev.lat, o.minZoom, o.maxZoom) : undefined;
        for (let i = 0; i < nowTiles.length; i++) {
          const tile = nowTiles[i]!;
          const room = roomName(n.tenant, tile);
          if (o.isActive(room)) {
            const a = acc(room, tile);
            const cur = a.updates.get(n.id);
            if (!cur || cur.ts <= u.ts) a.updates.set(n.id, u);
            a.left.delete(n.id);
          }
          const prev = prevTiles?.[i];
          if (prev !== undefined && prev !== tile) {
            const proom = roomName(n.tenant, prev);
            if (o.isActive(proom)) {
              const a = acc(proom, prev);
              a.updates.delete(n.id);
              a.left.set(n.id, { id: n.id, reason: 'moved', ts: n.ts });
            }
          }
        }
        const er = entityRoom(n.tenant, n.id);
        if (o.isActive(er)) {
          const cur = entities.get(er)?.update;
          if (!cur || cur.ts <= u.ts) entities.set(er, { room: er, id: n.id, update: u });
        }
      }
    },
    expired(gone, now = Date.now()) {
      for (const g of gone) {
        for (const tile of tilesOfPoint(g.lon, g.lat, o.minZoom, o.maxZoom)) {
          const room = roomName(g.tenant, tile);
          if (!o.isActive(room)) continue;
          const a = acc(room, tile);
          a.updates.delete(g.id);
          a.left.set(g.id, { id: g.id, reason: 'expired', ts: now });
        }
        const er = entityRoom(g.tenant, g.id);
        if (o.isActive(er)) entities.set(er, { room: er, id: g.id, gone: true });
      }
    },
    take() {
      const t = tiles;
      const e = entities;
      tiles = new Map();
      entities = new Map();
      const out: TileFrame[] = [];
      for (const [room, a] of t) {
        if (a.updates.size === 0 && a.left.size === 0) continue;
        out.push({ room, tile: a.tile, updates: [...a.updates.values()], left: [...a.left.values()] });
      }
      return { tiles: out, entities: [...e.values()] };
    },
    pendingRooms: () => tiles.size + entities.size,
  };
}
