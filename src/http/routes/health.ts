import type { TemplatedApp } from 'uWebSockets.js';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from '../../log/logger.js';
import { route } from '../respond.js';

export interface HealthDeps {
  log: Logger;
  redis: Redis;
  pg: pg.Pool;
  /** True once the gateway is draining: readiness fails so load balancers move away. */
  isClosing(): boolean;
}

async function check(name: string, fn: () => Promise<unknown>, timeoutMs = 1000): Promise<[string, string]> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([fn(), new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('timeout')), timeoutMs); })]);
    return [name, 'ok'];
  } catch (err) {
    return [name, (err as Error).message || 'error'];
  } finally {
    clearTimeout(timer);
  }
}

/** GET /healthz: the process is up. GET /readyz: Redis and PostgreSQL answer and we are not draining. */
export function registerHealthRoutes(app: TemplatedApp, d: HealthDeps): void {
  app.get('/healthz', route(d.log, () => ({ status: 200, body: { status: 'ok' } })));
  app.get('/readyz', route(d.log, async () => {
    const checks = Object.fromEntries(await Promise.all([
      check('redis', () => d.redis.ping()),
      check('postgres', () => d.pg.query('SELECT 1')),
    ]));
    const closing = d.isClosing();
    const ready = !closing && Object.values(checks).every((v) => v === 'ok');
    return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : closing ? 'draining' : 'not_ready', checks } };
  }));
}
