/** `node dist/src/store/pg/migrate-cli.js`: apply pending migrations to DATABASE_URL. */
import { loadConfig } from '../../config/load.js';
import { createLogger } from '../../log/logger.js';
import { connectPg, endPg } from './pool.js';
import { migrate } from './migrate.js';

const cfg = loadConfig();
const log = createLogger(cfg, 'cli');
const pool = await connectPg(cfg.database.url, log, 1, 'geoflux-migrate').catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message} (DATABASE_URL)\n`);
  process.exit(1);
});
try {
  const applied = await migrate(pool, log);
  log.info({ applied: applied.length }, 'migrations up to date');
} finally {
  await endPg(pool);
}
