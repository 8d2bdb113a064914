import type { LiveMove, LivePosition } from '../protocol/live.js';
import type { EntityUpdate, LeftEntity } from '../protocol/rooms.js';
import { toUpdate } from './room-reader.js';
import { ancestor, entityRoom, roomName, tilesOfPoint } from './room-names.js';
import { tileKey, tileOf } from '../geo/tiles.js';

/** What one tile room gets in one coalescing interval. */
export interface TileFrame {
  room: string;
  tile: string;
  /** Latest state of each changed entity (one per id). */
  updates: EntityUpdate[];
  left: LeftEntity[];
  /** When the oldest change in this frame was offered (ms epoch): coalescing delay = send time - since. */
  since: number;
  /** When this gateway received the oldest ping offered to this frame (ms epoch), when known. */
  oldestRx?: number;
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
  /**
   * Which zooms (ascending) have active tile rooms for a tenant, and whether it has active
   * entity rooms; undefined when none. Lets a move of a tenant nobody watches cost nothing.
   * Default: every zoom and entity rooms (isActive decides alone).
   */
  interest?(tenant: string): TenantInterest | undefined;
}

export interface TenantInterest {
  /** Zooms with active tile rooms, ascending. */
  zooms: readonly number[];
  entities: boolean;
}

/**
 * Collects live changes per room between two flushes: latest state wins per entity, an entity
 * that moved out of a tile becomes a `left` there, one that came back cancels it.
 */
export interface Coalescer {
  moved(moves: readonly LiveMove[]): void;
  expired(gone: readonly LivePosition[], now?: number): void;
  /**
   * Returns and clears what accumulated, for the rooms whose last frame is at least `minGapMs`
   * old (the others stay pending): a quiet room's first change goes out at once, a busy room
   * gets at most one frame per `minGapMs`.
   */
  take(now?: number, minGapMs?: number): { tiles: TileFrame[]; entities: EntityFrame[] };
  pendingRooms(): number;
}

interface TileAcc { tile: string; updates: Map<string, EntityUpdate>; left: Map<string, LeftEntity>; since: number; oldestRx?: number }

export function createCoalescer(o: CoalescerOptions): Coalescer {
  const tiles = new Map<string, TileAcc>();
  const entities = new Map<string, EntityFrame>();
  /** Rooms that got a frame less than minGapMs ago (room → when). */
  const lastSent = new Map<string, number>();

  const everything: TenantInterest = { zooms: Array.from({ length: Math.max(0, o.maxZoom - o.minZoom + 1) }, (_, i) => o.minZoom + i), entities: true };
  const interest = o.interest ?? ((): TenantInterest => everything);

  const acc = (room: string, tile: string): TileAcc => {
    let a = tiles.get(room);
    if (!a) tiles.set(room, (a = { tile, updates: new Map(), left: new Map(), since: Date.now() }));
    return a;
  };

  return {
    moved(moves) {
      for (const m of moves) {
        const n = m.now;
        const ix = interest(n.tenant);
        if (!ix) continue;
        const u = toUpdate(n);
        const zooms = ix.zooms;
        if (zooms.length > 0) {
          // One tile computation at the deepest watched zoom; the others are its ancestors.
          const deep = Math.min(o.maxZoom, zooms[zooms.length - 1]!);
          const nt = tileOf(n.lon, n.lat, deep);
          const pt = m.prev ? tileOf(m.prev.lon, m.prev.lat, deep) : undefined;
          for (const z of zooms) {
            if (z < o.minZoom || z > deep) continue;
            const tile = tileKey(ancestor(nt, z));
            const room = roomName(n.tenant, tile);
            if (o.isActive(room)) {
              const a = acc(room, tile);
              const cur = a.updates.get(n.id);
              if (!cur || cur.ts <= u.ts) a.updates.set(n.id, u);
              a.left.delete(n.id);
              if (m.rx !== undefined && (a.oldestRx === undefined || m.rx < a.oldestRx)) a.oldestRx = m.rx;
            }
            if (pt === undefined) continue;
            const prev = tileKey(ancestor(pt, z));
            if (prev !== tile) {
              const proom = roomName(n.tenant, prev);
              if (o.isActive(proom)) {
                const a = acc(proom, prev);
                a.updates.delete(n.id);
                a.left.set(n.id, { id: n.id, reason: 'moved', ts: n.ts });
              }
            }
          }
        }
        if (!ix.entities) continue;
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
    take(now = Date.now(), minGapMs = 0) {
      for (const [room, at] of lastSent) if (now - at >= minGapMs) lastSent.delete(room);
      const out: TileFrame[] = [];
      for (const [room, a] of tiles) {
        if (lastSent.has(room)) continue;
        tiles.delete(room);
        if (a.updates.size === 0 && a.left.size === 0) continue;
        if (minGapMs > 0) lastSent.set(room, now);
        const f: TileFrame = { room, tile: a.tile, updates: [...a.updates.values()], left: [...a.left.values()], since: a.since };
        if (a.oldestRx !== undefined) f.oldestRx = a.oldestRx;
        out.push(f);
      }
      const ents: EntityFrame[] = [];
      for (const [room, f] of entities) {
        if (lastSent.has(room)) continue;
        entities.delete(room);
        if (minGapMs > 0) lastSent.set(room, now);
        ents.push(f);
      }
      return { tiles: out, entities: ents };
    },
    pendingRooms: () => tiles.size + entities.size,
  };
}
