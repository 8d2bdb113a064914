import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { us_listen_socket } from 'uWebSockets.js';
import { loadUws } from '../../src/gateway/uws.js';
import { createRooms, type Rooms, type RoomsOptions } from '../../src/rooms/io-server.js';
import type { RoomReader } from '../../src/rooms/room-reader.js';
import { createHmacVerifier } from '../../src/auth/tokens.js';
import { createKeys } from '../../src/store/redis/keys.js';
import type { EntityUpdate, TileAggregate } from '../../src/protocol/rooms.js';
import { parseTile } from '../../src/geo/tiles.js';
import { testServices, randomKeyPrefix } from './services.js';
import { TEST_JWT_SECRET } from './tokens.js';

/**
 * The rooms server in the test process (a uWS app of its own, real Redis for the adapter and
 * the registry) with a snapshot reader the test controls: what a tile's snapshot holds, and
 * whether its read waits for the test (`hold`) or fails. Lets tests order a snapshot read
 * against deltas (`rooms.moved` / `rooms.expired`) and against other requests exactly.
 */
export interface Gate {
  /** Resolves once a snapshot read of the tile started (and is waiting). */
  reached: Promise<void>;
  release(): void;
  fail(err?: Error): void;
}

export interface ControlledReader extends RoomReader {
  /** Snapshot contents per tile (what a read returns: taken when the read starts). */
  readonly tiles: Map<string, EntityUpdate[]>;
  /** Followed entities' current states. */
  readonly entities: Map<string, EntityUpdate>;
  /** The next snapshot read of `tile` waits until released (or fails). */
  hold(tile: string): Gate;
  /** The next `n` snapshot reads of `tile` (default 1) fail at once. */
  failNext(tile: string, n?: number): void;
  /** The next `n` entity reads of `id` fail at once. */
  failEntity(id: string, n?: number): void;
  /** Tiles read so far, in order. */
  readonly reads: string[];
}

function controlledReader(): ControlledReader {
  const tiles = new Map<string, EntityUpdate[]>();
  const entities = new Map<string, EntityUpdate>();
  const gates = new Map<string, { started: () => void; wait: Promise<void> }>();
  const failing = new Map<string, number>();
  const failingEntities = new Map<string, number>();
  const reads: string[] = [];
  const take = (m: Map<string, number>, k: string): boolean => {
    const n = m.get(k) ?? 0;
    if (n <= 0) return false;
    m.set(k, n - 1);
    return true;
  };
  return {
    tiles, entities, reads,
    hold(tile) {
      let started!: () => void;
      let release!: () => void;
      let fail!: (e: Error) => void;
      const reached = new Promise<void>((r) => { started = r; });
      const wait = new Promise<void>((res, rej) => { release = res; fail = rej; });
      wait.catch(() => undefined);
      gates.set(tile, { started, wait });
      return { reached, release: () => release(), fail: (e = new Error('redis down (test)')) => fail(e) };
    },
    failNext(tile, n = 1) { failing.set(tile, n); },
    failEntity(id, n = 1) { failingEntities.set(id, n); },
    async snapshot(_tenant, tile) {
      reads.push(tile);
      const content = [...(tiles.get(tile) ?? [])];
      if (take(failing, tile)) throw new Error('redis down (test)');
      const g = gates.get(tile);
      if (g) {
        gates.delete(tile);
        g.started();
        await g.wait;
      }
      return content;
    },
    async aggregates(_tenant, keys) {
      const out = new Map<string, TileAggregate>();
      for (const k of keys) {
        const t = parseTile(k);
        if (t) out.set(k, { tile: k, z: Math.min(t.z + 3, 13), cells: [], total: 0, ts: Date.now() });
      }
      return out;
    },
    async entity(_tenant, id) {
      if (take(failingEntities, id)) throw new Error('redis down (test)');
      return entities.get(id);
    },
  };
}

export interface RoomsServer {
  url: string;
  rooms: Rooms;
  reader: ControlledReader;
  /** Gateways subscribed to a tile room's shard channel (the sharded adapter subscribes while the room has local members). */
  roomSubscribers(tenant: string, tile: string): Promise<number>;
  stop(): Promise<void>;
}

export const TEST_ROOMS_OPTIONS: RoomsOptions = {
  minZoom: 3, maxZoom: 18, aggregateBelowZoom: 12, aggregateDepth: 3, aggregateIntervalMs: 1000, coalesceMs: 5,
  maxTilesPerClient: 8, slowClientBufferBytes: 1 << 20, registryRefreshMs: 300,
};

export async function startRoomsServer(opts: Partial<RoomsOptions> = {}): Promise<RoomsServer> {
  const { redisUrl } = testServices();
  const pub = new Redis(redisUrl);
  const sub = new Redis(redisUrl);
  const prefix = randomKeyPrefix();
  const reader = controlledReader();
  const { uws } = loadUws();
  const app = uws.App();
  const rooms = createRooms({
    log: pino({ level: process.env.TEST_ROOMS_LOG ?? 'silent' }), verifier: createHmacVerifier(TEST_JWT_SECRET, 'geoflux'),
    pub, sub, keys: createKeys(prefix), keyPrefix: prefix, ingestZoom: 13, entityTtlSeconds: 30,
    opts: { ...TEST_ROOMS_OPTIONS, ...opts }, reader,
  });
  rooms.attach(app);
  await rooms.start();
  const listen = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('uWS listen failed'))));
  });
  const port = uws.us_socket_local_port(listen);
  return {
    url: `http://127.0.0.1:${port}`,
    rooms,
    reader,
    async roomSubscribers(tenant, tile) {
      const [, n] = await pub.call('PUBSUB', 'SHARDNUMSUB', `${prefix}io#/#${tenant}:${tile}#`) as [string, number];
      return Number(n);
    },
    async stop() {
      await rooms.close();
      uws.us_listen_socket_close(listen);
      pub.disconnect();
      sub.disconnect();
    },
  };
}
