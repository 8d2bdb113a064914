import type { TemplatedApp } from 'uWebSockets.js';
import { register, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../../log/logger.js';
import { route } from '../respond.js';
import { registerCpuWaitMetric } from '../../lifecycle/cpu-wait-metric.js';

let defaultsOn = false;

/**
 * GET /metrics in Prometheus text format (prom-client). Modules declare their metrics with
 * prom-client at module level (global registry: one app per process).
 */
export function registerMetricsRoute(app: TemplatedApp, log: Logger): void {
  if (!defaultsOn) {
    collectDefaultMetrics({ prefix: 'geoflux_' });
    registerCpuWaitMetric('geoflux_');
    defaultsOn = true;
  }
  app.get('/metrics', route(log, async () => ({ status: 200, body: await register.metrics(), contentType: register.contentType })));
}
