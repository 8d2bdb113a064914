import type { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';
import type { Keys } from '../store/redis/keys.js';
import type { TenantInterest } from './coalescer.js';
import { parseRoom } from './room-names.js';

/**
 * Which rooms have subscribers on some gateway. A gateway that accepts pings publishes deltas
 * only for these rooms, so fan-out cost grows with subscribed rooms, not with all tiles.
 *
 * Redis: sorted set `keys.activeRooms` (member = room, score = expiry ms), refreshed by each
 * gateway every `refreshMs` for its local rooms (expiry = now + 3 × refreshMs, so a dead
 * gateway's rooms vanish within seconds); a new local room is announced at once on the channel
 * `keys.activeRoomsChannel`, so other gateways start publishing for it without waiting.
 */
export interface RoomRegistry {
  start(): Promise<void>;
  /** Registers rooms that just got a local subscriber; resolves once Redis and peers were told. */
  announce(rooms: readonly string[]): Promise<void>;
  has(room: string): boolean;
  /** Zooms with active tile rooms and whether entity rooms are active, for one tenant (undefined: nothing active). */
  interest(tenant: string): TenantInterest | undefined;
  size(): number;
  stop(): Promise<void>;
}

export interface RoomRegistryDeps {
  redis: Redis;
  /** Subscriber connection (borrowed: the adapter's; the registry only adds its channel and listener). */
  sub: Redis;
  keys: Keys;
  log: Logger;
  refreshMs: number;
  /** Rooms with local subscribers that must be registered (tile rooms at vehicle zooms, entity rooms). */
  localRooms(): Iterable<string>;
}

/** Per tenant: zooms with active tile rooms (ascending) and whether entity rooms are active. */
type InterestIndex = Map<string, { zooms: number[]; entities: boolean }>;

/** Adds a room to a per-tenant interest index. */
function indexRoom(index: InterestIndex, room: string): void {
  const r = parseRoom(room);
  if (!r) return;
  let t = index.get(r.tenant);
  if (!t) index.set(r.tenant, (t = { zooms: [], entities: false }));
  if (r.kind === 'entity') t.entities = true;
  else if (!t.zooms.includes(r.z)) {
    t.zooms.push(r.z);
    t.zooms.sort((a, b) => a - b);
  }
}

export function createRoomRegistry(d: RoomRegistryDeps): RoomRegistry {
  let active = new Set<string>();
  let index: InterestIndex = new Map();
  /** Rooms announced recently: kept across a refresh whose read may predate the announce. */
  const announced = new Map<string, number>();
  const remember = (room: string): void => {
    if (!active.has(room)) { active.add(room); indexRoom(index, room); }
    announced.set(room, Date.now());
  };
  let timer: NodeJS.Timeout | undefined;
  let refreshing = false;
  const ttl = (): number => Date.now() + 3 * d.refreshMs;

  async function refresh(): Promise<void> {
    if (refreshing) return;
    refreshing = true;
    try {
      const now = Date.now();
      const pipe = d.redis.pipeline();
      const local = [...d.localRooms()];
      const exp = ttl();
      for (let i = 0; i < local.length; i += 1000) {
        const args: (string | number)[] = [];
        for (const r of local.slice(i, i + 1000)) args.push(exp, r);
        pipe.zadd(d.keys.activeRooms, ...args);
      }
      pipe.zremrangebyscore(d.keys.activeRooms, '-inf', now);
      pipe.zrangebyscore(d.keys.activeRooms, now, '+inf');
      const res = await pipe.exec();
      const last = res?.[res.length - 1];
      if (!last || last[0]) throw last?.[0] ?? new Error('no reply');
      const next = new Set(last[1] as string[]);
      for (const r of local) next.add(r);
      for (const [r, at] of announced) {
        if (Date.now() - at < 3 * d.refreshMs) next.add(r); else announced.delete(r);
      }
      const nextIndex: InterestIndex = new Map();
      for (const r of next) indexRoom(nextIndex, r);
      active = next;
      index = nextIndex;
    } catch (err) {
      d.log.warn({ err }, 'room registry refresh failed');
    } finally {
      refreshing = false;
    }
  }

  const onMessage = (channel: string, room: string): void => {
    if (channel === d.keys.activeRoomsChannel) remember(room);
  };

  return {
    async start() {
      d.sub.on('message', onMessage);
      await d.sub.subscribe(d.keys.activeRoomsChannel);
      await refresh();
      timer = setInterval(() => { void refresh(); }, d.refreshMs);
      timer.unref();
    },
    async announce(rooms) {
      if (rooms.length === 0) return;
      for (const r of rooms) remember(r);
      const exp = ttl();
      const pipe = d.redis.pipeline();
      const args: (string | number)[] = [];
      for (const r of rooms) args.push(exp, r);
      pipe.zadd(d.keys.activeRooms, ...args);
      for (const r of rooms) pipe.publish(d.keys.activeRoomsChannel, r);
      await pipe.exec();
    },
    has: (room) => active.has(room),
    interest: (tenant) => index.get(tenant),
    size: () => active.size,
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      d.sub.off('message', onMessage);
      try { await d.sub.unsubscribe(d.keys.activeRoomsChannel); } catch (err) { d.log.debug({ err }, 'room registry unsubscribe failed'); }
    },
  };
}
