import { Counter, Gauge, Histogram, register } from 'prom-client';

function getOr<T>(name: string, make: () => T): T {
  return (register.getSingleMetric(name) as T | undefined) ?? make();
}

/** Ingest metrics (prom-client global registry, declared once per process). */
export const ingestMetrics = {
  accepted: getOr('geoflux_pings_accepted_total', () => new Counter({
    name: 'geoflux_pings_accepted_total', help: 'Pings made durable, by outcome (advanced, history, duplicate)', labelNames: ['outcome'] as const,
  })),
  rejected: getOr('geoflux_pings_rejected_total', () => new Counter({
    name: 'geoflux_pings_rejected_total', help: 'Pings or frames rejected, by error code', labelNames: ['code'] as const,
  })),
  frames: getOr('geoflux_ingest_frames_total', () => new Counter({
    name: 'geoflux_ingest_frames_total', help: 'Ingest frames received, by transport and encoding', labelNames: ['transport', 'encoding'] as const,
  })),
  batchSize: getOr('geoflux_ingest_batch_pings', () => new Histogram({
    name: 'geoflux_ingest_batch_pings', help: 'Pings per Redis write batch (one per event-loop turn)',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  })),
  redisWrite: getOr('geoflux_redis_write_seconds', () => new Histogram({
    name: 'geoflux_redis_write_seconds', help: 'Latency of one ingest batch write to Redis (one script call; two round trips with cluster-safe scripts)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  })),
  connected: getOr('geoflux_ingest_connections', () => new Gauge({
    name: 'geoflux_ingest_connections', help: 'Connected driver (ingest) WebSockets',
  })),
  closed: getOr('geoflux_ingest_closes_total', () => new Counter({
    name: 'geoflux_ingest_closes_total', help: 'Ingest sockets closed by the server, by close code', labelNames: ['code'] as const,
  })),
  swept: getOr('geoflux_liveness_swept_total', () => new Counter({
    name: 'geoflux_liveness_swept_total', help: 'Stale entities removed from live cells by the sweeper',
  })),
};
