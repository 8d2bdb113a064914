import pg from 'pg';
import type { Logger } from '../../log/logger.js';
import { DependencyError, describeUrl } from '../../errors/dependency-error.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** Creates a pg pool and checks that it can connect. Whoever creates it calls `end()`. */
export async function connectPg(url: string, log: Logger, max: number, name: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max, application_name: name, connectionTimeoutMillis: 5000 });
  pool.on('error', (err) => log.warn({ err }, 'postgres idle client error'));
  try {
    const c = await pool.connect();
    c.release();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new DependencyError('PostgreSQL', describeUrl(url), err);
  }
  return pool;
}

export async function endPg(pool: pg.Pool): Promise<void> {
  await pool.end();
}
