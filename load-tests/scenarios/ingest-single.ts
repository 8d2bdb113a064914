/** Ingest with one ping per frame (the phone's usual frame): same measurements as `ingest`. */
import type { ScenarioContext } from '../lib/context.js';
import type { ScenarioResult } from '../lib/report.js';
import { runIngest } from './ingest.js';

export function main(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const rate = o.rate || (o.smoke ? 5000 : 20_000);
  return runIngest(ctx, {
    name: 'ingest-single', batch: 1, rate, drivers: o.drivers || (o.smoke ? 500 : 2000),
    seconds: o.duration, warmupSeconds: o.smoke ? 1 : 3, targetRate: o.smoke ? rate : 20_000, gateways: o.ingestGateways, driverProcs: o.driverProcs,
  });
}
