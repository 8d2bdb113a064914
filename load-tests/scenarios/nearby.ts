/**
 * Nearby: a city of live drivers, then GET /v1/nearby at a fixed arrival rate from random
 * points in it (the dispatcher's question). Throughput, latency, error rate.
 */
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, redisCpuSeconds, scenarioPrefix, sleep } from '../lib/context.js';
import { benchToken, CITY, closeDrivers, openDrivers } from '../lib/drivers.js';
import { p99Under, round } from '../lib/hist.js';
import { getAtRate } from '../lib/http-load.js';
import { MB, procSample } from '../lib/proc-stat.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { startBenchGateway } from '../lib/stack.js';

export async function main(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const entities = o.drivers || (o.smoke ? 1000 : 5000);
  const rate = o.rate || (o.smoke ? 300 : 2000);
  const radius = 1500;
  await cleanRedis(ctx.stack.redisUrl);
  const gw = await startBenchGateway({ stack: ctx.stack, keyPrefix: scenarioPrefix('nearby') });
  try {
    progress(`nearby: placing ${entities} live drivers`);
    const opened = await openDrivers(gw.url, entities, { prefix: 'nb', encoding: 'msgpack', concurrency: 128 });
    await Promise.all(opened.clients.map((c, i) => c.send(opened.vehicles[i]!.next(Date.now(), 1000)).catch(() => undefined)));
    await closeDrivers(opened.clients);
    const token = await benchToken('dispatcher-1', ['query']);
    await sleep(200);
    const g0 = procSample(gw.pid);
    const r0 = await redisCpuSeconds(ctx.stack.redisUrl);
    let hits = 0;
    let bodies = 0;
    progress(`nearby: ${rate} req/s, radius ${radius} m, ${o.duration}s`);
    const s = await getAtRate({
      base: gw.url, rate, seconds: o.duration, label: 'nearby', headers: { authorization: `Bearer ${token}` },
      path: () => {
        const lat = CITY.lat + (Math.random() - 0.5) * 0.08;
        const lon = CITY.lon + (Math.random() - 0.5) * 0.1;
        return `/v1/nearby?lat=${lat.toFixed(5)}&lon=${lon.toFixed(5)}&radius=${radius}&limit=20`;
      },
      onBody: (b) => { bodies++; hits += (JSON.parse(b) as { count?: number }).count ?? 0; },
    });
    const g1 = procSample(gw.pid);
    const r1 = await redisCpuSeconds(ctx.stack.redisUrl);
    const lat = s.latency.summary();
    const errRate = s.sent ? s.failed / s.sent : 0;
    return {
      scenario: 'nearby',
      load: `${rate} req/s offered, ${opened.clients.length} live entities, r=${radius} m, limit 20, ${o.duration}s`,
      latency: lat,
      latencyOf: 'request → full response (ms)',
      throughput: { value: Math.round(s.ok / s.seconds), unit: 'queries/s' },
      cpu: {
        'gateway ms/query': round(((g1.cpuSeconds - g0.cpuSeconds) * 1000) / Math.max(1, s.ok), 3),
        'redis ms/query': round(((r1 - r0) * 1000) / Math.max(1, s.ok), 3),
      },
      memory: { 'gateway RSS MB': round(g1.rssBytes / MB, 1) },
      targets: {
        rate: { target: `>= ${rate} req/s`, value: Math.round(s.ok / s.seconds), ok: s.ok / s.seconds >= rate * 0.95 },
        'nearby p99': p99Under(50, lat),
        'error rate': { target: '< 0.1%', value: round(errRate * 100, 3), ok: errRate < 0.001 },
      },
      notes: [
        `mean results per query ${bodies ? round(hits / bodies, 1) : 0}`,
        ...(s.dropped ? [`${s.dropped} requests not sent: 256 already in flight`] : []),
        ...(s.failed ? [`statuses: ${JSON.stringify(s.statuses)}`] : []),
      ],
      extra: { sent: s.sent, ok: s.ok, failed: s.failed, dropped: s.dropped, statuses: s.statuses },
    };
  } finally {
    await gw.stop();
  }
}
