import type pg from 'pg';
import type { Logger } from '../src/log/logger.js';
import { workerMetrics } from './metrics.js';

/** Any stable number: one worker at a time runs partition maintenance. */
const MAINTENANCE_LOCK = 724_311_004;

export const HISTORY_TABLES = ['public.positions', 'public.cell_stats'] as const;
export const DEDUP_TABLES = ['public.ping_log', 'public.track_windows', 'public.cell_window_entities'] as const;

export interface MaintenanceOptions {
  retentionDays: number;
  dedupRetentionDays: number;
  premakeDays: number;
  intervalMs: number;
}

/**
 * pg_partman maintenance on a timer: applies premake/retention from config to part_config,
 * then `partman.run_maintenance()` creates partitions ahead and drops expired ones. Guarded
 * by a session advisory lock so that only one worker runs it at a time.
 */
export function createPartitionMaintenance(pool: pg.Pool, log: Logger, o: MaintenanceOptions) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> = Promise.resolve(false);
  let stopped = false;

  async function runOnce(): Promise<boolean> {
    const client = await pool.connect();
    let locked = false;
    try {
      locked = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [MAINTENANCE_LOCK])).rows[0]!.ok;
      if (!locked) { log.debug('partition maintenance runs elsewhere'); return false; }
      const set = `UPDATE partman.part_config SET premake = $1, retention = $2, retention_keep_table = false,
                   retention_keep_index = false, infinite_time_partitions = true WHERE parent_table = ANY($3)`;
      await client.query(set, [o.premakeDays, `${o.retentionDays} days`, HISTORY_TABLES]);
      await client.query(set, [o.premakeDays, `${o.dedupRetentionDays} days`, DEDUP_TABLES]);
      const started = Date.now();
      await client.query('SELECT partman.run_maintenance(p_analyze := false, p_jobmon := false)');
      workerMetrics.maintenanceRuns.inc({ result: 'ok' });
      log.info({ ms: Date.now() - started, retentionDays: o.retentionDays, premakeDays: o.premakeDays }, 'partition maintenance done');
      return true;
    } catch (err) {
      workerMetrics.maintenanceRuns.inc({ result: 'error' });
      throw err;
    } finally {
      if (locked) await client.query('SELECT pg_advisory_unlock($1)', [MAINTENANCE_LOCK]).catch(() => undefined);
      client.release();
    }
  }

  const tick = (): void => {
    running = runOnce().catch((err: unknown) => { log.warn({ err }, 'partition maintenance failed; retried next interval'); return false; });
    void running.finally(() => { if (!stopped) timer = setTimeout(tick, o.intervalMs); });
  };

  return {
    runOnce,
    start(): void { tick(); },
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
