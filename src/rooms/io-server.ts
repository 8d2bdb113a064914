import { Server, type Socket } from 'socket.io';
import { createShardedAdapter } from '@socket.io/redis-adapter';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import type { Logger } from '../log/logger.js';
import type { Principal, TokenVerifier } from '../auth/tokens.js';
import { hasScope, requireScope } from '../auth/tokens.js';
import { isAppError } from '../errors/app-error.js';
import { ENTITY_ID_RE } from '../protocol/ping.js';
import type { LiveEvents } from '../protocol/live.js';
import type { ClientToServerEvents, FollowAck, ServerToClientEvents, SubscribeAck } from '../protocol/rooms.js';
import { packEntity, ROOM_ERROR_CODES, SOCKET_PATH } from '../protocol/rooms.js';
import { roomsParser } from '../protocol/rooms-parser.js';
import { parseTile, tileKey, tilesInBBox, type BBox } from '../geo/tiles.js';
import type { Keys } from '../store/redis/keys.js';
import { createCoalescer } from './coalescer.js';
import { createRoomReader, type RoomReader } from './room-reader.js';
import { createRoomRegistry } from './registry.js';
import { entityRoom, parseRoom, roomName } from './room-names.js';
import { roomsMetrics } from './metrics.js';
import { atDeadline } from './deadline.js';
import { publishNatively } from './uws-publish.js';

export { roomName } from './room-names.js';

interface SocketData {
  principal: Principal;
  /** Entity ids the token may follow (claim `follow`); `admin` may follow any. */
  follow: ReadonlySet<string>;
  /** Tiles subscribed explicitly, and through the viewport. */
  tiles: Set<string>;
  viewport: Set<string>;
}
type IoServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type IoSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

export interface RoomsOptions {
  minZoom: number;
  maxZoom: number;
  aggregateBelowZoom: number;
  aggregateDepth: number;
  aggregateIntervalMs: number;
  coalesceMs: number;
  maxTilesPerClient: number;
  slowClientBufferBytes: number;
  registryRefreshMs: number;
}

export interface RoomsDeps {
  log: Logger;
  verifier: TokenVerifier;
  /** Data client (snapshots, registry; the adapter's publisher unless `publisher`), and the adapter's subscriber client (borrowed; the caller closes them). */
  pub: Redis;
  sub: Redis;
  /** The adapter's publisher, when not `pub`: a connection of its own, so room frames do not wait behind `pub`'s pipelined ingest scripts. */
  publisher?: Redis;
  keys: Keys;
  keyPrefix: string;
  ingestZoom: number;
  entityTtlSeconds: number;
  opts: RoomsOptions;
  /** False refuses new socket.io connections (the gateway's connection limit). */
  allowConnection?: () => boolean;
  /** Snapshot reader (default: reads `pub`); tests pass one that delays or fails on purpose. */
  reader?: RoomReader;
}

export interface Rooms extends LiveEvents {
  attach(app: TemplatedApp): void;
  /** Starts the room registry and the timers; resolves once the registry is loaded. */
  start(): Promise<void>;
  clientCount(): number;
  close(): Promise<void>;
}

const packr = new Packr({ useRecords: false });
const MAX_FOLLOWS = 16;

type Reply<T> = (res: T) => void;
const replier = <T>(ack: unknown): Reply<T> => (typeof ack === 'function' ? ack as Reply<T> : () => undefined);
const bad = (message: string): SubscribeAck => ({ ok: false, code: ROOM_ERROR_CODES.BAD_REQUEST, message });

interface EngineClient { writeToEngine(packets: unknown, opts: unknown): void }
interface UwsTransport { name: string; socket?: { cork(cb: () => void): void } }

/**
 * A room frame is a socket.io binary event: two WebSocket messages (the event with a
 * placeholder, then the MessagePack attachment). engine.io's uWS transport sends each at once,
 * one syscall apiece; corking the client's write of the pair makes it one syscall (and one
 * TCP segment for the client to read). Per connection, on socket.io's Client of that socket
 * only; falls back to the plain write whenever the transport is not (or no longer) a uWS socket.
 */
function corkWrites(socket: IoSocket): void {
  const client = socket.client as unknown as EngineClient;
  const write = client.writeToEngine;
  client.writeToEngine = function corked(this: EngineClient, packets: unknown, opts: unknown): void {
    const t = socket.conn.transport as unknown as UwsTransport;
    if (!Array.isArray(packets) || packets.length < 2 || t.name !== 'websocket' || !t.socket) return write.call(this, packets, opts);
    let ran = false;
    try {
      t.socket.cork(() => { ran = true; write.call(this, packets, opts); });
    } catch (err) {
      if (ran) throw err;
      write.call(this, packets, opts); // cork refused (the uWS socket closed under us): let engine.io handle it
    }
  };
}

/** socket.io on the gateway's uWS app: tile rooms, shared across gateways by the sharded Redis adapter. */
export function createRooms(d: RoomsDeps): Rooms {
  const o = d.opts;
  const vehicleMinZoom = Math.max(o.minZoom, o.aggregateBelowZoom);
  const io: IoServer = new Server({
    path: SOCKET_PATH,
    parser: roomsParser,
    transports: ['websocket', 'polling'],
    allowRequest: (_req, cb) => cb(null, d.allowConnection?.() ?? true),
    // Redis 7 sharded Pub/Sub, one channel per room: a gateway only receives rooms it has members in.
    adapter: createShardedAdapter(d.publisher ?? d.pub, d.sub, { channelPrefix: `${d.keyPrefix}io`, subscriptionMode: 'dynamic' }),
    // uWS drops frames silently beyond maxBackpressure: keep it above our own slow-client limit.
    ...({ maxBackpressure: o.slowClientBufferBytes * 4 } as object),
  });
  const nsp = io.of('/');
  const reader = d.reader ?? createRoomReader(d.pub, d.keys, { ingestZoom: d.ingestZoom, entityTtlSeconds: d.entityTtlSeconds, aggregateDepth: o.aggregateDepth });
  const registry = createRoomRegistry({
    redis: d.pub, sub: d.sub, keys: d.keys, log: d.log, refreshMs: o.registryRefreshMs,
    *localRooms() {
      for (const room of nsp.adapter.rooms.keys()) {
        const r = parseRoom(room);
        if (r && (r.kind === 'entity' || r.z >= vehicleMinZoom)) yield room;
      }
    },
  });
  const coalescer = createCoalescer({ minZoom: vehicleMinZoom, maxZoom: o.maxZoom, isActive: (room) => registry.has(room), interest: (tenant) => registry.interest(tenant) });
  const timers: NodeJS.Timeout[] = [];

  io.use((socket, next) => {
    const token = (socket.handshake.auth as { token?: string } | undefined)?.token;
    d.verifier.verify(token).then((principal) => {
      requireScope(principal, 'subscribe');
      socket.data.principal = principal;
      socket.data.follow = new Set(principal.follow);
      socket.data.tiles = new Set();
      socket.data.viewport = new Set();
      next();
    }).catch((err: unknown) => {
      const e = new Error(isAppError(err) ? err.message : 'unauthorized') as Error & { data?: unknown };
      e.data = { code: isAppError(err) ? err.code : 'UNAUTHORIZED' };
      next(e);
    });
  });

  const parseTiles = (tiles: unknown): string[] | SubscribeAck => {
    if (!Array.isArray(tiles) || tiles.length === 0) return bad('tiles must be a non-empty array of z/x/y');
    const out = new Set<string>();
    for (const t of tiles) {
      const tile = typeof t === 'string' ? parseTile(t) : undefined;
      if (!tile || tile.z < o.minZoom || tile.z > o.maxZoom) {
        return bad(`invalid tile ${String(t)}: expected z/x/y with z in ${o.minZoom}..${o.maxZoom}`);
      }
      out.add(tileKey(tile));
    }
    return [...out];
  };
  const isAggregate = (tile: string): boolean => Number(tile.slice(0, tile.indexOf('/'))) < o.aggregateBelowZoom;
  const okAck = (tiles: string[]): SubscribeAck => {
    const aggregated = tiles.filter(isAggregate);
    return aggregated.length > 0 ? { ok: true, tiles, aggregated } : { ok: true, tiles };
  };
  const held = (s: IoSocket): Set<string> => new Set([...s.data.tiles, ...s.data.viewport]);
  const tooMany = (): SubscribeAck => ({ ok: false, code: ROOM_ERROR_CODES.TOO_MANY_TILES, message: `at most ${o.maxTilesPerClient} tiles per client` });

  const unavailable = (message: string): { ok: false; code: string; message: string } => ({ ok: false, code: ROOM_ERROR_CODES.UNAVAILABLE, message });

  /**
   * Joins `join` (rooms the socket did not hold), registers the vehicle rooms, reads every
   * snapshot (or aggregates) of `tiles`, then sends them. Nothing is sent unless every read
   * succeeded, so a failed request leaves the client no frame of a tile it was refused.
   */
  async function joinAndSnapshot(socket: IoSocket, tiles: readonly string[], join: readonly string[]): Promise<void> {
    if (tiles.length === 0) return;
    const { tenant } = socket.data.principal;
    if (join.length > 0) await socket.join(join.map((t) => roomName(tenant, t)));
    const vehicle = tiles.filter((t) => !isAggregate(t));
    const agg = tiles.filter(isAggregate);
    await registry.announce(vehicle.map((t) => roomName(tenant, t)));
    const [snaps, aggs] = await Promise.all([
      Promise.all(vehicle.map((t) => reader.snapshot(tenant, t))),
      agg.length > 0 ? reader.aggregates(tenant, agg) : new Map<string, never>(),
    ]);
    if (!socket.connected) return;
    vehicle.forEach((t, i) => socket.emit('snapshot', t, packr.pack(snaps[i]!.map(packEntity))));
    for (const [t, a] of aggs) socket.emit('aggregates', t, packr.pack(a));
  }

  /** Leaves the rooms of `tiles` that the socket no longer holds (explicitly or through its viewport). */
  const leaveUnheld = (socket: IoSocket, tiles: Iterable<string>): void => {
    const h = held(socket);
    for (const t of tiles) if (!h.has(t)) void socket.leave(roomName(socket.data.principal.tenant, t));
  };

  /**
   * Why a viewport bbox is refused (undefined: fine). Both longitudes within [-180, 180] (west >
   * east crosses the antimeridian); latitudes within [-90, 90], south <= north (beyond the Web
   * Mercator limit ±85.0511 they fall in the edge row, as in /v1/within).
   */
  const viewportError = (bbox: unknown): string | undefined => {
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      return 'bbox must be [west, south, east, north] in degrees (finite numbers)';
    }
    const [w, s, e, n] = bbox as BBox;
    if (w < -180 || w > 180 || e < -180 || e > 180) return `bbox longitudes must be within [-180, 180] (west ${w}, east ${e}; west > east crosses the antimeridian)`;
    if (s < -90 || n > 90 || s > n) return `bbox latitudes must be within [-90, 90] with south <= north (south ${s}, north ${n})`;
    return undefined;
  };

  io.on('connection', (socket: IoSocket) => {
    corkWrites(socket);
    const { tenant } = socket.data.principal;
    roomsMetrics.connections.inc();
    // A token is only good until it expires: then the client must come back with a fresh one.
    // (exp may be months away: beyond setTimeout's 2^31-1 ms limit the timer is re-armed in chunks.)
    const expiry = atDeadline(socket.data.principal.exp, () => socket.disconnect(true));
    socket.on('disconnect', () => {
      roomsMetrics.connections.dec();
      expiry.cancel();
    });

    /**
     * A socket's requests run one at a time, in arrival order: each one sees the state the
     * previous one left (held tiles, viewport, follows), and acks (and the snapshots before
     * them) go out in request order. Without that, a quick request acked while a slow one
     * still reads its snapshots leaves the client believing the opposite of what the server
     * holds. A request that fails undoes what it did, and says UNAVAILABLE.
     */
    let queue: Promise<void> = Promise.resolve();
    const serial = (what: string, fn: () => Promise<void>, onError: () => void): void => {
      queue = queue.then(async () => {
        if (!socket.connected) return; // rooms joined now would outlive the socket
        try {
          await fn();
        } catch (err) {
          d.log.error({ err, sid: socket.id, what }, 'room request failed');
          onError();
        }
      });
    };

    socket.on('subscribe', (req, ack) => {
      const reply = replier<SubscribeAck>(ack);
      serial('subscribe', async () => {
        const tiles = parseTiles(req?.tiles);
        if (!Array.isArray(tiles)) return reply(tiles);
        const h = held(socket);
        const join = tiles.filter((t) => !h.has(t));
        if (h.size + join.length > o.maxTilesPerClient) return reply(tooMany());
        const added = tiles.filter((t) => !socket.data.tiles.has(t));
        for (const t of added) socket.data.tiles.add(t);
        try {
          await joinAndSnapshot(socket, tiles, join);
        } catch (err) {
          for (const t of added) socket.data.tiles.delete(t);
          leaveUnheld(socket, join);
          throw err;
        }
        reply(okAck(tiles));
      }, () => reply(unavailable('snapshot failed')));
    });

    socket.on('viewport', (req, ack) => {
      const reply = replier<SubscribeAck>(ack);
      serial('viewport', async () => {
        const bbox = req?.bbox;
        const zoom = req?.zoom;
        const badBox = viewportError(bbox);
        if (badBox) return reply(bad(badBox));
        if (typeof zoom !== 'number' || !Number.isInteger(zoom) || zoom < o.minZoom || zoom > o.maxZoom) {
          return reply(bad(`zoom must be an integer in ${o.minZoom}..${o.maxZoom}`));
        }
        const found = tilesInBBox(bbox as BBox, zoom, o.maxTilesPerClient, 'half-open');
        if (!found) return reply(tooMany());
        const next = new Set(found.map(tileKey));
        if (new Set([...socket.data.tiles, ...next]).size > o.maxTilesPerClient) return reply(tooMany());
        const h = held(socket);
        const added = [...next].filter((t) => !h.has(t));
        // The previous viewport stays joined until the new one is in: a failure changes nothing.
        try {
          await joinAndSnapshot(socket, added, added);
        } catch (err) {
          leaveUnheld(socket, added);
          throw err;
        }
        const old = socket.data.viewport;
        socket.data.viewport = next;
        leaveUnheld(socket, old);
        reply(okAck([...next]));
      }, () => reply(unavailable('snapshot failed')));
    });

    socket.on('unsubscribe', (req, ack) => {
      const reply = replier<SubscribeAck>(ack);
      serial('unsubscribe', async () => {
        const tiles = parseTiles(req?.tiles);
        if (!Array.isArray(tiles)) return reply(tiles);
        for (const t of tiles) {
          socket.data.tiles.delete(t);
          socket.data.viewport.delete(t);
          void socket.leave(roomName(tenant, t));
        }
        reply({ ok: true, tiles });
      }, () => reply(unavailable('unsubscribe failed')));
    });

    socket.on('follow', (req, ack) => {
      const reply = replier<FollowAck>(ack);
      serial('follow', async () => {
        const id = req?.id;
        if (typeof id !== 'string' || !ENTITY_ID_RE.test(id)) return reply({ ok: false, code: ROOM_ERROR_CODES.BAD_REQUEST, message: 'id must be an entity id' });
        if (!hasScope(socket.data.principal, 'admin') && !socket.data.follow.has(id)) {
          return reply({ ok: false, code: ROOM_ERROR_CODES.FORBIDDEN, message: `token may not follow ${id}` });
        }
        const room = entityRoom(tenant, id);
        const was = socket.rooms.has(room);
        const following = [...socket.rooms].filter((r) => parseRoom(r)?.kind === 'entity').length;
        if (!was && following >= MAX_FOLLOWS) return reply({ ok: false, code: ROOM_ERROR_CODES.TOO_MANY_TILES, message: `at most ${MAX_FOLLOWS} followed entities` });
        let u;
        try {
          await socket.join(room);
          await registry.announce([room]);
          u = await reader.entity(tenant, id);
        } catch (err) {
          if (!was) void socket.leave(room);
          throw err;
        }
        if (u) socket.emit('entity', id, packr.pack(packEntity(u)));
        reply({ ok: true, id });
      }, () => reply(unavailable('follow failed')));
    });

    socket.on('unfollow', (req, ack) => {
      const reply = replier<FollowAck>(ack);
      serial('unfollow', async () => {
        const id = req?.id;
        if (typeof id !== 'string') return reply({ ok: false, code: ROOM_ERROR_CODES.BAD_REQUEST, message: 'id must be an entity id' });
        void socket.leave(entityRoom(tenant, id));
        reply({ ok: true, id });
      }, () => reply(unavailable('unfollow failed')));
    });
  });

  function flush(): void {
    if (coalescer.pendingRooms() === 0) return;
    const now = Date.now();
    const { tiles, entities } = coalescer.take(now, o.coalesceMs);
    for (const f of tiles) {
      roomsMetrics.coalesceDelay.observe((now - f.since) / 1000);
      if (f.oldestRx !== undefined) roomsMetrics.pingToFrame.observe((now - f.oldestRx) / 1000);
      if (f.updates.length > 0) io.to(f.room).emit('update', f.tile, packr.pack(f.updates.map(packEntity)));
      if (f.left.length > 0) io.to(f.room).emit('left', f.tile, packr.pack(f.left));
      roomsMetrics.frames.inc(f.updates.length > 0 && f.left.length > 0 ? 2 : 1);
      roomsMetrics.entityUpdates.inc(f.updates.length);
    }
    for (const e of entities) {
      if (e.gone) io.to(e.room).emit('entityLeft', e.id, 'expired');
      else if (e.update) io.to(e.room).emit('entity', e.id, packr.pack(packEntity(e.update)));
    }
  }

  let aggregating = false;
  async function sendAggregates(): Promise<void> {
    if (aggregating) return;
    aggregating = true;
    try {
      const byTenant = new Map<string, string[]>();
      for (const room of nsp.adapter.rooms.keys()) {
        const r = parseRoom(room);
        if (r?.kind !== 'tile' || r.z >= o.aggregateBelowZoom) continue;
        let list = byTenant.get(r.tenant);
        if (!list) byTenant.set(r.tenant, (list = []));
        list.push(r.tile);
      }
      for (const [tenant, tiles] of byTenant) {
        for (const [t, a] of await reader.aggregates(tenant, tiles)) io.local.to(roomName(tenant, t)).emit('aggregates', t, packr.pack(a));
      }
    } catch (err) {
      d.log.warn({ err }, 'aggregates refresh failed');
    } finally {
      aggregating = false;
    }
  }

  /** A client whose unsent buffer keeps growing is disconnected: it never slows the others. */
  function dropSlowClients(): void {
    for (const socket of nsp.sockets.values()) {
      let buffered = 0;
      try {
        const ws = (socket.conn.transport as unknown as { socket?: { getBufferedAmount?: () => number } }).socket;
        buffered = socket.conn.readyState === 'open' ? ws?.getBufferedAmount?.() ?? 0 : 0;
      } catch {
        continue; // the uWS socket is already closed
      }
      if (buffered > o.slowClientBufferBytes) {
        d.log.warn({ sid: socket.id, buffered }, 'slow map client disconnected');
        roomsMetrics.slowDisconnects.inc();
        socket.disconnect(true);
      }
    }
  }

  let stopping: Promise<void> | undefined;

  return {
    attach(app) {
      io.attachApp(app);
      publishNatively(nsp, app);
    },
    async start() {
      await registry.start();
      const every = (ms: number, fn: () => void): void => { const t = setInterval(fn, ms); t.unref(); timers.push(t); };
      // Leading edge: a room's first change after a quiet interval goes out on the next tick
      // (≤ 5 ms); a busy room still gets at most one frame per coalesceMs.
      every(Math.max(1, Math.min(5, Math.floor(o.coalesceMs / 5))), flush);
      every(o.aggregateIntervalMs, () => { void sendAggregates(); });
      every(Math.min(250, Math.max(50, o.coalesceMs * 4)), dropSlowClients);
    },
    moved(moves) {
      coalescer.moved(moves);
    },
    expired(gone) {
      coalescer.expired(gone);
    },
    clientCount: () => io.engine.clientsCount,
    close() {
      stopping ??= (async () => {
        for (const t of timers) clearInterval(t);
        try { flush(); } catch (err) { d.log.warn({ err }, 'final flush failed'); }
        // Only this gateway's sockets: a cluster-wide disconnect would drop every gateway's clients.
        io.local.disconnectSockets(true);
        await new Promise<void>((resolve) => { io.close(() => resolve()); });
        await registry.stop();
      })();
      return stopping;
    },
  };
}
