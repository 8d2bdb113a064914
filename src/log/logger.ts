import { pino, type Logger } from 'pino';
import type { Config } from '../config/schema.js';

export type { Logger };
export type ProcessRole = 'gateway' | 'worker' | 'simulator' | 'bench' | 'cli';

/** The one root logger of a process: role and instance id on every line. */
export function createLogger(cfg: Pick<Config, 'log' | 'env' | 'instanceId'>, role: ProcessRole): Logger {
  const pretty = cfg.log.pretty === 'auto'
    ? Boolean(process.stdout.isTTY) && cfg.env !== 'production'
    : cfg.log.pretty;
  return pino({
    level: cfg.log.level,
    base: { role, instance: cfg.instanceId },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } }
      : {}),
  });
}
