import pg from 'pg';
import type { Logger } from '../../log/logger.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** Creates a pg pool and checks that it can connect. Whoever creates it calls `end()`. */
export async function connectPg(url: string, log: Logger, max: number, name: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: url, max, application_name: name, connectionTimeoutMillis: 5000 });
  pool.on('error', (err) => log.warn({ err }, 'postgres idle client error'));
  const c = await pool.connect();
  c.release();
  return pool;
}

export async function endPg(pool: pg.Pool): Promise<void> {
  await pool.end();
}
