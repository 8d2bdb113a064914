/**
 * Idle connections: N driver sockets that connected (auth + welcome) and then send nothing.
 * Memory per connection = gateway RSS growth / N. Target (issue 3): 10,000 idle driver
 * connections in under 500 MB of gateway memory.
 */
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, scenarioPrefix, sleep } from '../lib/context.js';
import { closeDrivers, openDrivers } from '../lib/drivers.js';
import { round } from '../lib/hist.js';
import { MB, procSample } from '../lib/proc-stat.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { startBenchGateway } from '../lib/stack.js';

export async function main(ctx: ScenarioContext): Promise<ScenarioResult> {
  const n = ctx.opts.idle;
  await cleanRedis(ctx.stack.redisUrl);
  const gw = await startBenchGateway({ stack: ctx.stack, keyPrefix: scenarioPrefix('idle') });
  try {
    await sleep(500);
    const base = procSample(gw.pid);
    progress(`idle: opening ${n} idle driver sockets`);
    const t0 = performance.now();
    const opened = await openDrivers(gw.url, n, { prefix: 'idle', encoding: 'msgpack', concurrency: 128, perAddress: 10_000 });
    const connectSecs = (performance.now() - t0) / 1000;
    await sleep(2000);
    const after = procSample(gw.pid);
    const cpuConnect = after.cpuSeconds - base.cpuSeconds;
    await sleep(Math.min(5, ctx.opts.duration) * 1000);
    const idle = procSample(gw.pid);
    const perConn = (after.rssBytes - base.rssBytes) / Math.max(1, opened.clients.length);
    const projected10k = base.rssBytes + perConn * 10_000;
    await closeDrivers(opened.clients);
    return {
      scenario: 'idle',
      load: `${opened.clients.length} idle driver sockets (${opened.failed} failed)`,
      throughput: { value: Math.round(opened.clients.length / connectSecs), unit: 'connects/s (auth+welcome)' },
      cpu: {
        'gateway ms/connect': round((cpuConnect * 1000) / Math.max(1, opened.clients.length), 3),
        'gateway cores while idle': round((idle.cpuSeconds - after.cpuSeconds) / Math.min(5, ctx.opts.duration), 3),
      },
      memory: {
        'gateway RSS before MB': round(base.rssBytes / MB, 1),
        'gateway RSS after MB': round(after.rssBytes / MB, 1),
        'KB/conn': round(perConn / 1024, 2),
        'projected MB @10k': round(projected10k / MB, 1),
      },
      targets: { '10k idle < 500 MB': { target: '< 500 MB', value: round(projected10k / MB, 1), ok: projected10k < 500 * MB } },
      notes: [
        ...(n < 10_000 ? [`${n} sockets measured; the 10k figure is base RSS + 10,000 x KB/conn`] : []),
        ...(opened.failed ? [`${opened.failed} failed: ${opened.firstError}`] : []),
      ],
    };
  } finally {
    await gw.stop();
  }
}
