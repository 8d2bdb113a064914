import type { Logger } from '../log/logger.js';
import { loadConfig, ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';

/** Loads the config for a process entry point; on failure prints every problem and exits (2 = invalid config). */
export function loadConfigOrExit(): Readonly<Config> {
  try {
    return loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
}

export interface Stoppable {
  stop(): Promise<void>;
}

export interface RunOptions {
  log: Logger;
  /** The watchdog exits with code 1 if shutdown takes longer than this. */
  shutdownTimeoutMs: number;
  /** Builds and starts everything; resolves with what must be stopped on exit. */
  start(): Promise<Stoppable>;
}

/**
 * The only place that touches process signals and exit codes. First SIGINT/SIGTERM/SIGHUP
 * (a closed terminal): graceful stop under a watchdog; a second signal exits at once.
 */
export async function runProcess(opts: RunOptions): Promise<void> {
  const { log } = opts;
  let stopping: Promise<void> | undefined;
  let app: Stoppable | undefined;

  const shutdown = (reason: string, code: number): void => {
    if (stopping) {
      log.warn({ reason }, 'second signal: exiting now');
      process.exit(130);
    }
    log.info({ reason }, 'shutting down');
    const watchdog = setTimeout(() => {
      log.error({ timeoutMs: opts.shutdownTimeoutMs }, 'graceful shutdown timed out; exiting');
      process.exit(1);
    }, opts.shutdownTimeoutMs);
    watchdog.unref();
    stopping = (app ? app.stop() : Promise.resolve())
      .then(() => {
        log.info('stopped');
        log.flush?.();
        clearTimeout(watchdog);
        process.exitCode = code;
      })
      .catch((err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      });
  };

  process.on('SIGINT', () => shutdown('SIGINT', 0));
  process.on('SIGTERM', () => shutdown('SIGTERM', 0));
  // There is nothing to reload: a hangup (the terminal of `npm run gateway` closed) stops gracefully too.
  process.on('SIGHUP', () => shutdown('SIGHUP', 0));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    shutdown('uncaughtException', 1);
  });

  try {
    app = await opts.start();
  } catch (err) {
    log.fatal({ err }, 'failed to start');
    if (app) await (app as Stoppable).stop().catch(() => undefined);
    process.exit(1);
  }
  if (stopping) await app.stop();
}
