/** Worker composition root: config, clients, persister, partition maintenance, metrics, signals. */
import { createLogger } from '../src/log/logger.js';
import { runProcess, loadConfigOrExit } from '../src/lifecycle/run-process.js';
import { connectRedis, quitRedis } from '../src/store/redis/client.js';
import { connectPg, endPg } from '../src/store/pg/pool.js';
import { migrate } from '../src/store/pg/migrate.js';
import { createPersister } from './persister.js';
import { createPartitionMaintenance } from './partitions.js';
import { startMetricsServer, stopMetricsServer } from './metrics.js';

const cfg = loadConfigOrExit();
const log = createLogger(cfg, 'worker');
/** Test-only fault injection (not a config key): pause between COMMIT and XACK. */
const delayAfterCommitMs = Number(process.env.GEOFLUX_FAULT_DELAY_AFTER_COMMIT_MS ?? 0) || 0;

await runProcess({
  log,
  shutdownTimeoutMs: cfg.shutdown.timeoutMs,
  async start() {
    const w = cfg.worker;
    if (w.dedupRetentionDays * 86_400_000 < cfg.ingest.maxAgeMs + 86_400_000) {
      log.warn({ dedupRetentionDays: w.dedupRetentionDays, ingestMaxAgeMs: cfg.ingest.maxAgeMs },
        'DEDUP_RETENTION_DAYS should exceed INGEST_MAX_AGE_MS by a day: older late pings could be counted twice');
    }
    const redis = await connectRedis(cfg.redis.url, log, 'worker');
    const pg = await connectPg(cfg.database.url, log, 4, 'geoflux-worker');
    await migrate(pg, log);
    const maintenance = createPartitionMaintenance(pg, log.child({ module: 'partitions' }), {
      retentionDays: w.retentionDays, dedupRetentionDays: w.dedupRetentionDays, premakeDays: w.premakeDays, intervalMs: w.maintenanceIntervalMs,
    });
    maintenance.start();
    const metricsServer = await startMetricsServer(w.metricsPort, cfg.http.host, log);
    const persister = createPersister({ cfg, log: log.child({ module: 'persister' }), redis, pg, consumer: cfg.instanceId, delayAfterCommitMs });
    await persister.start();
    log.info({ flushIntervalMs: w.flushIntervalMs, group: w.consumerGroup, mode: w.mode }, 'worker running');
    return {
      async stop() {
        const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
          try { await fn(); } catch (err) { log.warn({ err, step: name }, 'shutdown step failed'); }
        };
        await step('persister', () => persister.stop());
        await step('maintenance', () => maintenance.stop());
        await step('metrics', () => stopMetricsServer(metricsServer));
        await step('redis', () => quitRedis(redis));
        await step('pg', () => endPg(pg));
      },
    };
  },
});
