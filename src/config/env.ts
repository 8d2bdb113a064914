/**
 * Environment variables and the config keys they override. One table, so the README,
 * error messages and the loader agree.
 */
export const ENV_VARS = {
  NODE_ENV: 'env',
  INSTANCE_ID: 'instanceId',
  LOG_LEVEL: 'log.level',
  LOG_PRETTY: 'log.pretty',
  HOST: 'http.host',
  PORT: 'http.port',
  UWS_ALLOW_FALLBACK: 'http.allowUwsFallback',
  REDIS_URL: 'redis.url',
  REDIS_KEY_PREFIX: 'redis.keyPrefix',
  DATABASE_URL: 'database.url',
  DATABASE_POOL_SIZE: 'database.poolSize',
  JWT_SECRET: 'auth.jwtSecret',
  JWT_ISSUER: 'auth.issuer',
  GRID_ZOOM: 'grid.ingestZoom',
  ENTITY_TTL_SECONDS: 'liveness.entityTtlSeconds',
  SWEEP_INTERVAL_MS: 'liveness.sweepIntervalMs',
  INGEST_MAX_PAYLOAD_BYTES: 'ingest.maxPayloadBytes',
  INGEST_MAX_BATCH: 'ingest.maxBatch',
  STREAM_MAX_LEN: 'ingest.streamMaxLen',
  INGEST_IDLE_TIMEOUT_SECONDS: 'ingest.idleTimeoutSeconds',
  QUERY_MAX_RADIUS_METERS: 'query.maxRadiusMeters',
  QUERY_MAX_LIMIT: 'query.maxLimit',
  ROOMS_MIN_ZOOM: 'rooms.minZoom',
  ROOMS_MAX_ZOOM: 'rooms.maxZoom',
  ROOMS_AGGREGATE_BELOW_ZOOM: 'rooms.aggregateBelowZoom',
  ROOMS_AGGREGATE_DEPTH: 'rooms.aggregateDepth',
  ROOMS_AGGREGATE_INTERVAL_MS: 'rooms.aggregateIntervalMs',
  ROOMS_COALESCE_MS: 'rooms.coalesceMs',
  ROOMS_MAX_TILES_PER_CLIENT: 'rooms.maxTilesPerClient',
  ROOMS_SLOW_CLIENT_BUFFER_BYTES: 'rooms.slowClientBufferBytes',
  ROOMS_REGISTRY_REFRESH_MS: 'rooms.registryRefreshMs',
  FLUSH_INTERVAL_MS: 'worker.flushIntervalMs',
  WORKER_CONSUMER_GROUP: 'worker.consumerGroup',
  WORKER_READ_COUNT: 'worker.readCount',
  PERSIST_MODE: 'worker.mode',
  WORKER_CLAIM_IDLE_MS: 'worker.claimIdleMs',
  WORKER_MAX_BATCH: 'worker.maxBatch',
  RETENTION_DAYS: 'worker.retentionDays',
  DEDUP_RETENTION_DAYS: 'worker.dedupRetentionDays',
  PARTITION_PREMAKE_DAYS: 'worker.premakeDays',
  PARTITION_MAINTENANCE_INTERVAL_MS: 'worker.maintenanceIntervalMs',
  WORKER_METRICS_PORT: 'worker.metricsPort',
  SHUTDOWN_TIMEOUT_MS: 'shutdown.timeoutMs',
} as const satisfies Record<string, string>;

export type EnvVarName = keyof typeof ENV_VARS;

/** The environment variable that sets a config path, if any (for error messages). */
export function envNameFor(path: string): EnvVarName | undefined {
  return (Object.keys(ENV_VARS) as EnvVarName[]).find((k) => ENV_VARS[k] === path);
}
