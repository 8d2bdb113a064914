import { z } from 'zod';

/**
 * The whole configuration of every process, validated once at start.
 * Defaults live in config/default.json; environment variables (see env.ts) override them.
 */
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.preprocess((v) => {
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no' || v === '') return false;
  return v;
}, z.boolean());

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const configSchema = z.object({
  /** development | production | test; production refuses the development JWT secret. */
  env: z.enum(['development', 'production', 'test']),
  /** Shown on every log line; empty means `<hostname>-<pid>`. */
  instanceId: z.string(),
  log: z.object({
    level: z.enum(LOG_LEVELS),
    /** true: human-readable lines; false: JSON; auto: pretty when stdout is a terminal and env != production. */
    pretty: z.union([z.literal('auto'), bool]),
  }),
  http: z.object({
    /** Listen address (also of the worker's /metrics); 127.0.0.1 by default: development defaults must not be reachable from the network. */
    host: z.string().min(1),
    port: int(0, 65535),
    /** Allow the slow pure-JS fallback of uWebSockets.js (never in production). */
    allowUwsFallback: bool,
    /** Client connections (drivers + map clients) accepted; 0 = open-files limit minus a reserve. */
    maxConnections: int(0, 10_000_000),
  }),
  redis: z.object({
    url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
    /** Prefix of every key this deployment owns (tests use a random one). */
    keyPrefix: z.string().max(64),
    /**
     * Ingest scripts touch one hash tag per call (one call per entity bucket, then one per cell:
     * two round trips), as Redis Cluster requires. false (default): one script call per batch
     * does both steps, for a single Redis.
     */
    clusterSafeScripts: bool,
    /**
     * Entity state (live state with a TTL) also goes to the AOF. false (default): to replicas
     * only, so the AOF holds the pings (streams, GEO, seen) and a third of the bytes.
     */
    entityStateInAof: bool,
  }),
  database: z.object({
    url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
    poolSize: int(1, 200),
  }),
  auth: z.object({
    jwtSecret: z.string().min(32, 'must be at least 32 characters'),
    issuer: z.string().min(1),
    /** Production: a JWKS file (ES256/RS256 public keys); when set, tokens are verified against it instead of jwtSecret. */
    jwksFile: z.string(),
  }),
  grid: z.object({
    /** Web Mercator zoom of the ingest cells (Redis GEO sets and streams). */
    ingestZoom: int(6, 18),
  }),
  liveness: z.object({
    /** An entity silent this long is never returned and is swept out. */
    entityTtlSeconds: int(5, 86400),
    sweepIntervalMs: int(100, 600000),
    /** Bounded sweeper work: cells visited per tick, members removed per cell per tick. */
    sweepMaxCells: int(1, 100000),
    sweepBatch: int(1, 5000),
  }),
  ingest: z.object({
    maxPayloadBytes: int(256, 16 * 1024 * 1024),
    maxBatch: int(1, 10000),
    /** Approximate cap of each cell stream (XADD MAXLEN ~). */
    streamMaxLen: int(1000, 100_000_000),
    idleTimeoutSeconds: int(8, 960),
    /** Clock checks: pings further in the future / older than this are refused. */
    maxFutureMs: int(0, 86_400_000),
    maxAgeMs: int(1000, 30 * 86_400_000),
    /** Plausibility: implied speed above this (m/s), after the slack distance, flags IMPLAUSIBLE_JUMP. */
    maxSpeedMps: int(1, 100000),
    jumpSlackMeters: int(0, 100000),
    /** Per-connection token bucket (pings/s and burst); debt beyond rateAbusePings closes with 4029. */
    ratePerSecond: int(1, 1_000_000),
    rateBurst: int(1, 10_000_000),
    rateAbusePings: int(1, 10_000_000),
    /** Backpressure: a frame arriving while this many bytes of replies are unread closes with 4030. */
    maxBufferedBytes: int(1024, 64 * 1024 * 1024),
    /** Admission control: frames arriving while this many pings wait for Redis are refused (OVERLOADED). */
    maxPendingPings: int(100, 10_000_000),
    /** Ingest batches written to Redis at once; later frames wait and go in the next, larger batch. */
    maxWritesInFlight: int(1, 1000),
  }),
  query: z.object({
    maxRadiusMeters: int(1, 1_000_000),
    maxLimit: int(1, 10000),
  }),
  rooms: z.object({
    minZoom: int(0, 22),
    maxZoom: int(0, 22),
    /** Tiles with z below this get aggregate counts per sub-tile instead of every vehicle. */
    aggregateBelowZoom: int(0, 23),
    /** Sub-tiles of an aggregate are this many zooms deeper (capped at the ingest zoom). */
    aggregateDepth: int(1, 6),
    /** Aggregates are recomputed and sent this often. */
    aggregateIntervalMs: int(100, 600000),
    /** Per room, at most one delta frame per this interval (coalescing). */
    coalesceMs: int(5, 10000),
    /** Tiles one client may hold (subscribe + viewport). */
    maxTilesPerClient: int(1, 10000),
    /** A client whose unsent buffer exceeds this is disconnected (it re-subscribes and gets a fresh snapshot). */
    slowClientBufferBytes: int(16384, 1 << 30),
    /** How often a gateway re-registers its subscribed rooms and reloads the active-room set. */
    registryRefreshMs: int(100, 60000),
  }),
  worker: z.object({
    flushIntervalMs: int(100, 600000),
    consumerGroup: z.string().min(1),
    readCount: int(1, 1_000_000),
    /** window: one positions row per entity per 10 s window (latest fix + count + mean speed); raw: every ping. */
    mode: z.enum(['window', 'raw']),
    /** Entries pending (read, not acked) longer than this are claimed by another worker (XAUTOCLAIM). */
    claimIdleMs: int(1000, 3_600_000),
    /** Most stream entries one flush takes (the rest waits for the next, immediate, flush). */
    maxBatch: int(1, 5_000_000),
    /** positions and cell_stats partitions older than this are dropped. */
    retentionDays: int(1, 36500),
    /** Dedup state (ping_log, track_windows with window mode's ledgers, cell_window_entities); must exceed the oldest accepted ping age. */
    dedupRetentionDays: int(2, 365),
    /** Daily partitions created ahead. */
    premakeDays: int(1, 365),
    /** How often one worker (advisory lock) runs pg_partman maintenance. */
    maintenanceIntervalMs: int(1000, 86_400_000),
    /** Optional Prometheus /metrics listener of the worker, on http.host (0 = off). */
    metricsPort: int(0, 65535),
  }),
  shutdown: z.object({
    /** The watchdog exits the process if graceful shutdown takes longer. */
    timeoutMs: int(100, 600000),
  }),
}).superRefine((c, ctx) => {
  if (c.rooms.minZoom > c.rooms.maxZoom) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['rooms', 'minZoom'], message: 'must be <= rooms.maxZoom' });
  }
});

export type Config = z.infer<typeof configSchema>;
