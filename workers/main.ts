/** Worker composition root: config, clients, persister, signals. */
import { loadConfig, ConfigError } from '../src/config/load.js';
import { createLogger } from '../src/log/logger.js';
import { runProcess } from '../src/lifecycle/run-process.js';
import { connectRedis, quitRedis } from '../src/store/redis/client.js';
import { connectPg, endPg } from '../src/store/pg/pool.js';
import { migrate } from '../src/store/pg/migrate.js';
import { createPersister } from './persister.js';

let cfg;
try {
  cfg = loadConfig();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
const log = createLogger(cfg, 'worker');

await runProcess({
  log,
  shutdownTimeoutMs: cfg.shutdown.timeoutMs,
  async start() {
    const redis = await connectRedis(cfg.redis.url, log, 'worker');
    const pg = await connectPg(cfg.database.url, log, 4, 'geoflux-worker');
    await migrate(pg, log);
    const persister = createPersister({ cfg, log: log.child({ module: 'persister' }), redis, pg, consumer: cfg.instanceId });
    await persister.start();
    log.info({ flushIntervalMs: cfg.worker.flushIntervalMs, group: cfg.worker.consumerGroup }, 'worker running');
    return {
      async stop() {
        await persister.stop();
        await quitRedis(redis);
        await endPg(pg);
      },
    };
  },
});
