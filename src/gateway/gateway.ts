import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { UwsBuild } from './uws.js';
import { createVerifier } from '../auth/tokens.js';
import { createKeys } from '../store/redis/keys.js';
import { createLiveWriter } from '../store/redis/live-writer.js';
import { createLiveReader } from '../store/redis/live-reader.js';
import { createIngestBatcher } from '../ingest/batcher.js';
import { resolveMaxConnections } from './capacity.js';
import { registerIngestSocket, type IngestSockets } from './ingest-socket.js';
import { createRooms, type Rooms } from '../rooms/io-server.js';
import { registerHealthRoutes } from '../http/routes/health.js';
import { registerNearbyRoute } from '../http/routes/nearby.js';
import { registerWithinRoute } from '../http/routes/within.js';
import { registerEntitiesRoute } from '../http/routes/entities.js';
import { registerTrackRoute } from '../http/routes/track.js';
import { registerCellStatsRoute } from '../http/routes/cell-stats.js';
import { registerPingsRoute } from '../http/routes/pings.js';
import { registerOpenApiRoute } from '../http/routes/openapi.js';
import { createSweeper } from '../liveness/sweeper.js';
import { registerMetricsRoute } from '../http/routes/metrics.js';
import { registerStaticRoutes } from '../http/routes/static.js';
import { registerStatsRoute } from '../http/routes/stats.js';
import { projectRoot } from '../config/load.js';
import { defaultDataDir } from '../sim/data-dir.js';
import { errorBody, route } from '../http/respond.js';
import { CLOSE_CODES } from '../protocol/errors.js';

export interface GatewayDeps {
  cfg: Readonly<Config>;
  log: Logger;
  uws: UwsBuild;
  /** Data client (commands, ingest scripts, snapshots). */
  redis: Redis;
  /** Subscriber client for the socket.io adapter. */
  redisSub: Redis;
  /** Publisher client for the socket.io adapter (room frames do not queue behind ingest scripts); default: `redis`. */
  redisPub?: Redis;
  pg: pg.Pool;
}

export type GatewayState = 'idle' | 'starting' | 'listening' | 'closing' | 'closed';

export interface Gateway {
  /** Resolves once the port is listening. */
  start(): Promise<void>;
  /** Idempotent ordered shutdown; returns the same promise if called twice. */
  stop(): Promise<void>;
  readonly port: number;
  readonly state: GatewayState;
}

const MAX_NEARBY_CELLS = 2500;

export function createGateway(d: GatewayDeps): Gateway {
  const { cfg, log } = d;
  let state: GatewayState = 'idle';
  const setState = (s: GatewayState): void => {
    log.debug({ from: state, to: s }, 'gateway state');
    state = s;
  };
  let listenSocket: us_listen_socket | undefined;
  let port = 0;
  let stopping: Promise<void> | undefined;
  let ingest: IngestSockets | undefined;
  let rooms: Rooms | undefined;

  const keys = createKeys(cfg.redis.keyPrefix);
  const verifier = createVerifier(cfg.auth);
  const writer = createLiveWriter(d.redis, keys, {
    entityTtlSeconds: cfg.liveness.entityTtlSeconds, streamMaxLen: cfg.ingest.streamMaxLen, maxSpeedMps: cfg.ingest.maxSpeedMps, jumpSlackMeters: cfg.ingest.jumpSlackMeters,
    clusterSafe: cfg.redis.clusterSafeScripts, entityStateInAof: cfg.redis.entityStateInAof,
  });
  const sweeper = createSweeper(d.redis, keys, {
    entityTtlSeconds: cfg.liveness.entityTtlSeconds, intervalMs: cfg.liveness.sweepIntervalMs, maxCells: cfg.liveness.sweepMaxCells, batch: cfg.liveness.sweepBatch,
  }, (gone) => rooms?.expired(gone), log.child({ module: 'sweeper' }));
  const reader = createLiveReader(d.redis, keys, { ingestZoom: cfg.grid.ingestZoom, entityTtlSeconds: cfg.liveness.entityTtlSeconds, maxCells: MAX_NEARBY_CELLS });
  const isClosing = (): boolean => state === 'closing' || state === 'closed';
  const maxConnections = resolveMaxConnections(cfg.http.maxConnections);
  const atCapacity = (): boolean => (ingest?.count() ?? 0) + (rooms?.clientCount() ?? 0) >= maxConnections;

  function build(): TemplatedApp {
    const app = d.uws.uws.App();
    rooms = createRooms({
      log: log.child({ module: 'rooms' }), verifier, pub: d.redis, sub: d.redisSub, publisher: d.redisPub, keys, keyPrefix: cfg.redis.keyPrefix,
      ingestZoom: cfg.grid.ingestZoom, entityTtlSeconds: cfg.liveness.entityTtlSeconds, opts: cfg.rooms,
      allowConnection: () => !atCapacity(),
    });
    const batcher = createIngestBatcher(writer, { moved: (moves) => rooms?.moved(moves) }, log.child({ module: 'ingest' }), {
      maxPendingPings: cfg.ingest.maxPendingPings, maxWritesInFlight: cfg.ingest.maxWritesInFlight,
    });
    ingest = registerIngestSocket(app, {
      log: log.child({ module: 'ingest' }), verifier, batcher, ingestZoom: cfg.grid.ingestZoom,
      maxBatch: cfg.ingest.maxBatch, maxPayloadBytes: cfg.ingest.maxPayloadBytes, idleTimeoutSeconds: cfg.ingest.idleTimeoutSeconds,
      ratePerSecond: cfg.ingest.ratePerSecond, rateBurst: cfg.ingest.rateBurst, rateAbusePings: cfg.ingest.rateAbusePings, maxBufferedBytes: cfg.ingest.maxBufferedBytes,
      limits: { maxFutureMs: cfg.ingest.maxFutureMs, maxAgeMs: cfg.ingest.maxAgeMs }, isClosing, atCapacity,
    });
    registerPingsRoute(app, {
      log: log.child({ module: 'ingest-http' }), verifier, batcher, ingestZoom: cfg.grid.ingestZoom, maxBatch: cfg.ingest.maxBatch,
      maxPayloadBytes: cfg.ingest.maxPayloadBytes, limits: { maxFutureMs: cfg.ingest.maxFutureMs, maxAgeMs: cfg.ingest.maxAgeMs }, isClosing,
    });
    drainIngest = () => batcher.drain();
    rooms.attach(app);
    registerHealthRoutes(app, { log, redis: d.redis, pg: d.pg, isClosing });
    registerMetricsRoute(app, log);
    registerStaticRoutes(app, {
      log, root: projectRoot(), dataDir: defaultDataDir(),
      demo: cfg.env === 'production' ? undefined : { jwtSecret: cfg.auth.jwtSecret, issuer: cfg.auth.issuer, tenant: 'demo', ttlSeconds: 12 * 3600 },
    });
    registerStatsRoute(app, { log, verifier, redis: d.redis, keys, keyPrefix: cfg.redis.keyPrefix, entityTtlSeconds: cfg.liveness.entityTtlSeconds, mapClients: () => rooms?.clientCount() ?? 0 });
    registerNearbyRoute(app, { log, verifier, reader, maxRadiusMeters: cfg.query.maxRadiusMeters, maxLimit: cfg.query.maxLimit });
    registerWithinRoute(app, { log, verifier, reader, maxLimit: cfg.query.maxLimit });
    registerEntitiesRoute(app, { log, verifier, reader });
    registerTrackRoute(app, { log, verifier, pg: d.pg });
    registerCellStatsRoute(app, { log, verifier, pg: d.pg, ingestZoom: cfg.grid.ingestZoom });
    registerOpenApiRoute(app, { log, cfg });
    app.any('/*', route(log, (call) => ({ status: 404, body: errorBody('NOT_FOUND', `no route for ${call.method} ${call.url}`) })));
    return app;
  }
  let drainIngest: () => Promise<void> = async () => undefined;

  async function stopSteps(): Promise<void> {
    setState('closing');
    const step = async (name: string, fn: () => unknown): Promise<void> => {
      try { await fn(); } catch (err) { log.warn({ err, step: name }, 'shutdown step failed'); }
    };
    await step('close listen socket', () => { if (listenSocket) d.uws.uws.us_listen_socket_close(listenSocket); listenSocket = undefined; });
    await step('stop sweeper', () => sweeper.stop());
    await step('close ingest sockets', () => ingest?.closeAll(CLOSE_CODES.SERVER_RESTART, 'server restart'));
    await step('flush ingest batches', () => drainIngest());
    await step('close socket.io', () => rooms?.close());
    setState('closed');
  }

  return {
    get port() { return port; },
    get state() { return state; },
    async start() {
      if (state !== 'idle') throw new Error(`gateway cannot start from state ${state}`);
      setState('starting');
      const app = build();
      await rooms?.start();
      await new Promise<void>((resolve, reject) => {
        app.listen(cfg.http.host, cfg.http.port, (ls) => {
          if (!ls) return reject(new Error(`could not listen on ${cfg.http.host}:${cfg.http.port}`));
          listenSocket = ls;
          port = d.uws.uws.us_socket_local_port(ls);
          resolve();
        });
      });
      await sweeper.start();
      setState('listening');
      log.info({ host: cfg.http.host, port, uws: d.uws.build, uwsVersion: d.uws.version, maxConnections }, 'gateway listening');
    },
    stop() {
      stopping ??= stopSteps();
      return stopping;
    },
  };
}
