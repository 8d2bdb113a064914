import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, register, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../src/log/logger.js';
import { registerCpuWaitMetric } from '../src/lifecycle/cpu-wait-metric.js';

let lagSource: (() => Promise<number>) | undefined;
/** What the lag gauge reads at scrape time (ms): set by the persister. */
export function setLagSource(fn: (() => Promise<number>) | undefined): void { lagSource = fn; }

/** Worker metrics (prom-client global registry, one worker per process). */
export const workerMetrics = {
  pingsRead: new Counter({ name: 'geoflux_worker_pings_read_total', help: 'Stream entries decoded and written (including redeliveries)' }),
  pingsFresh: new Counter({ name: 'geoflux_worker_pings_persisted_total', help: 'Pings persisted for the first time (deduplicated)' }),
  rowsWritten: new Counter({ name: 'geoflux_worker_rows_written_total', help: 'Rows inserted or updated', labelNames: ['table'] as const }),
  flushDuration: new Histogram({
    name: 'geoflux_worker_flush_duration_seconds', help: 'Duration of one flush (read, write, commit, ack)',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  }),
  flushFailures: new Counter({ name: 'geoflux_worker_flush_failures_total', help: 'Flushes that failed and will be retried' }),
  entriesPending: new Gauge({ name: 'geoflux_worker_entries_pending', help: 'Stream entries read by a consumer and not acknowledged (all consumers)' }),
  entriesUndelivered: new Gauge({ name: 'geoflux_worker_entries_undelivered', help: 'Stream entries not yet read by any consumer' }),
  entriesHeld: new Gauge({ name: 'geoflux_worker_entries_held', help: 'Stream entries read and held in memory for the next write (at most 2 x WORKER_MAX_BATCH; the batch being written is not counted)' }),
  lag: new Gauge({
    name: 'geoflux_worker_persistence_lag_seconds',
    help: 'Age of the oldest stream entry not yet persisted (0 when none), computed when scraped',
    async collect() { if (lagSource) this.set((await lagSource()) / 1000); },
  }),
  deadLetters: new Counter({ name: 'geoflux_worker_dead_letters_total', help: 'Undecodable entries moved to the dead-letter stream' }),
  maintenanceRuns: new Counter({ name: 'geoflux_worker_partition_maintenance_total', help: 'pg_partman maintenance runs', labelNames: ['result'] as const }),
};

let defaultsOn = false;

/** Tiny optional /metrics listener (node:http); port 0 = off. */
export async function startMetricsServer(port: number, host: string, log: Logger): Promise<Server | undefined> {
  if (port === 0) return undefined;
  if (!defaultsOn) { collectDefaultMetrics({ prefix: 'geoflux_worker_' }); registerCpuWaitMetric('geoflux_worker_'); defaultsOn = true; }
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      register.metrics().then(
        (body) => { res.writeHead(200, { 'content-type': register.contentType }); res.end(body); },
        (err: unknown) => { log.error({ err }, 'metrics failed'); res.writeHead(500); res.end(); },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => resolve()); });
  log.info({ port, host }, 'worker metrics listening');
  return server;
}

export function stopMetricsServer(server: Server | undefined): Promise<void> {
  if (!server) return Promise.resolve();
  return new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
}
