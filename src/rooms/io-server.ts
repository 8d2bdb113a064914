import { Server, type Socket } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import type { Logger } from '../log/logger.js';
import type { Principal, TokenVerifier } from '../auth/tokens.js';
import { requireScope } from '../auth/tokens.js';
import { isAppError } from '../errors/app-error.js';
import type { AcceptedPing } from '../protocol/ping.js';
import type { ClientToServerEvents, EntityUpdate, ServerToClientEvents, SubscribeAck } from '../protocol/rooms.js';
import { SOCKET_PATH } from '../protocol/rooms.js';
import { parseTile, tileKey, tileOf } from '../geo/tiles.js';

interface SocketData { principal: Principal }
type IoServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type IoSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

export interface RoomsDeps {
  log: Logger;
  verifier: TokenVerifier;
  /** Publisher and subscriber clients for the adapter (borrowed; the caller closes them). */
  pub: Redis;
  sub: Redis;
  minZoom: number;
  maxZoom: number;
  maxTilesPerClient: number;
  keyPrefix: string;
}

export interface Rooms {
  attach(app: TemplatedApp): void;
  /** Offers durable pings to the tile rooms they fall in. */
  publish(pings: readonly AcceptedPing[]): void;
  clientCount(): number;
  close(): Promise<void>;
}

const packr = new Packr({ useRecords: false });

export function roomName(tenant: string, tile: string): string {
  return `${tenant}:${tile}`;
}

function toUpdate(p: AcceptedPing): EntityUpdate {
  const u: EntityUpdate = { id: p.id, lat: p.lat, lon: p.lon, ts: p.ts };
  if (p.speed !== undefined) u.speed = p.speed;
  if (p.heading !== undefined) u.heading = p.heading;
  if (p.kind !== undefined) u.kind = p.kind;
  if (p.status !== undefined) u.status = p.status;
  return u;
}

/** socket.io on the gateway's uWS app: tile rooms, shared across gateways by the Redis adapter. */
export function createRooms(d: RoomsDeps): Rooms {
  const io: IoServer = new Server({
    path: SOCKET_PATH,
    transports: ['websocket', 'polling'],
    adapter: createAdapter(d.pub, d.sub, { key: `${d.keyPrefix}io` }),
  });

  io.use((socket, next) => {
    const token = (socket.handshake.auth as { token?: string } | undefined)?.token;
    d.verifier.verify(token).then((principal) => {
      requireScope(principal, 'subscribe');
      socket.data.principal = principal;
      next();
    }).catch((err: unknown) => {
      const e = new Error(isAppError(err) ? err.message : 'unauthorized') as Error & { data?: unknown };
      e.data = { code: isAppError(err) ? err.code : 'UNAUTHORIZED' };
      next(e);
    });
  });

  const parseTiles = (tiles: unknown): string[] | SubscribeAck => {
    if (!Array.isArray(tiles) || tiles.length === 0) return { ok: false, code: 'BAD_REQUEST', message: 'tiles must be a non-empty array of z/x/y' };
    const out: string[] = [];
    for (const t of tiles) {
      const tile = typeof t === 'string' ? parseTile(t) : undefined;
      if (!tile || tile.z < d.minZoom || tile.z > d.maxZoom) {
        return { ok: false, code: 'BAD_REQUEST', message: `invalid tile ${String(t)}: expected z/x/y with z in ${d.minZoom}..${d.maxZoom}` };
      }
      out.push(tileKey(tile));
    }
    return out;
  };

  io.on('connection', (socket: IoSocket) => {
    const { tenant } = socket.data.principal;
    socket.on('subscribe', (req, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const tiles = parseTiles(req?.tiles);
      if (!Array.isArray(tiles)) return reply(tiles);
      const held = [...socket.rooms].filter((r) => r !== socket.id).length;
      const fresh = tiles.filter((t) => !socket.rooms.has(roomName(tenant, t)));
      if (held + fresh.length > d.maxTilesPerClient) {
        return reply({ ok: false, code: 'TOO_MANY_TILES', message: `at most ${d.maxTilesPerClient} tiles per client` });
      }
      void socket.join(fresh.map((t) => roomName(tenant, t)));
      reply({ ok: true, tiles });
    });
    socket.on('unsubscribe', (req, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const tiles = parseTiles(req?.tiles);
      if (!Array.isArray(tiles)) return reply(tiles);
      for (const t of tiles) void socket.leave(roomName(tenant, t));
      reply({ ok: true, tiles });
    });
  });

  return {
    attach(app) {
      io.attachApp(app);
    },
    publish(pings) {
      const byRoom = new Map<string, { tile: string; updates: EntityUpdate[] }>();
      for (const p of pings) {
        const u = toUpdate(p);
        for (let z = d.minZoom; z <= d.maxZoom; z++) {
          const tile = tileKey(tileOf(p.lon, p.lat, z));
          const room = roomName(p.tenant, tile);
          let e = byRoom.get(room);
          if (!e) byRoom.set(room, (e = { tile, updates: [] }));
          e.updates.push(u);
        }
      }
      for (const [room, e] of byRoom) io.to(room).emit('update', e.tile, packr.pack(e.updates));
    },
    clientCount: () => io.engine.clientsCount,
    async close() {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => { io.close(() => resolve()); });
    },
  };
}
