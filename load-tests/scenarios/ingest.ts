/**
 * Ingest: many driver sockets at a fixed offered rate, batched frames (default) or one ping
 * per frame. Reports accepted pings/s, ack latency, gateway + Redis CPU seconds per 100k pings
 * and gateway RSS per connection, with ratios to the redis-benchmark and uWS echo ceilings.
 */
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, redisCpuSeconds, scenarioPrefix, sleep } from '../lib/context.js';
import { openDriverLoad } from '../lib/driver-load.js';
import { p99Under, round } from '../lib/hist.js';
import { MB, machineBusyNotes, machineCpu, procSample, type ProcSample } from '../lib/proc-stat.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { startBenchGateway, type GatewayChild } from '../lib/stack.js';
import { writeStats, writeStatsNote } from '../lib/gateway-metrics.js';

export interface IngestParams { name: string; batch: number; rate: number; drivers: number; seconds: number; warmupSeconds: number; targetRate: number; gateways: number; driverProcs: number }

export async function runIngest(ctx: ScenarioContext, p: IngestParams): Promise<ScenarioResult> {
  await cleanRedis(ctx.stack.redisUrl);
  // One gateway process per core is the design's deployment; --ingest-gateways N spreads the
  // sockets round-robin over N gateways (CPU and RSS are summed over them).
  const prefix = scenarioPrefix(p.name);
  const gws: GatewayChild[] = [];
  try {
    for (let i = 0; i < p.gateways; i++) gws.push(await startBenchGateway({ stack: ctx.stack, keyPrefix: prefix }, `gateway-${i}`));
    const sample = (): ProcSample => gws.map((g) => procSample(g.pid)).reduce((a, b) => ({ cpuSeconds: a.cpuSeconds + b.cpuSeconds, rssBytes: a.rssBytes + b.rssBytes }));
    await sleep(300);
    const base = sample();
    progress(`${p.name}: opening ${p.drivers} driver sockets on ${gws.length} gateway(s) from ${p.driverProcs > 1 ? `${Math.max(p.driverProcs, gws.length)} forked processes` : 'the runner'}`);
    const load = await openDriverLoad(gws.map((g) => g.url), p.drivers, p.driverProcs, 'drv');
    const conn = sample();
    if (load.connected === 0) throw new Error(`no driver connected: ${load.firstError}`);
    if (p.warmupSeconds > 0) await load.run(p.rate, p.batch, p.warmupSeconds, `${p.name} warm-up`);
    const g0 = sample();
    const w0 = await writeStats(gws);
    const r0 = await redisCpuSeconds(ctx.stack.redisUrl);
    const l0 = load.forkedCpuSeconds();
    const m0 = machineCpu();
    progress(`${p.name}: ${p.rate} pings/s offered, ${p.batch}/frame, ${load.connected} sockets, ${p.seconds}s`);
    const s = await load.run(p.rate, p.batch, p.seconds, p.name);
    const m1 = machineCpu();
    const g1 = sample();
    const w1 = await writeStats(gws);
    const r1 = await redisCpuSeconds(ctx.stack.redisUrl);
    const loadCores = (load.forkedCpuSeconds() - l0) / s.seconds;
    await load.close();
    const accepted = s.pingsAccepted / s.seconds;
    const per100k = (cpu: number): number => (s.pingsAccepted > 0 ? (cpu / s.pingsAccepted) * 100_000 : NaN);
    const lat = s.ack.summary();
    const c = ctx.ceilings;
    const ratios: Record<string, number> = {};
    if (c.redisGeoaddP16) ratios['GEOADD-P16'] = round(accepted / c.redisGeoaddP16, 4);
    if (c.uwsEchoMsgsPerSec) ratios['uWS echo (frames)'] = round(s.framesAcked / s.seconds / c.uwsEchoMsgsPerSec, 4);
    const errorRate = s.pingsSent > 0 ? (s.pingErrors + s.frameFailures * p.batch) / s.pingsSent : 0;
    return {
      scenario: p.name,
      load: `${load.connected} sockets, ${p.rate} pings/s offered, ${p.batch}/frame, ${p.seconds}s${gws.length > 1 ? `, ${gws.length} gateways` : ''}`,
      latency: lat,
      latencyOf: 'frame sent → ack received (ms)',
      throughput: { value: Math.round(accepted), unit: 'pings/s accepted' },
      ratios,
      cpu: {
        'gateway s/100k pings': round(per100k(g1.cpuSeconds - g0.cpuSeconds), 3),
        'redis s/100k pings': round(per100k(r1 - r0), 3),
        [gws.length > 1 ? 'gateways cores' : 'gateway cores']: round((g1.cpuSeconds - g0.cpuSeconds) / s.seconds, 2),
        'redis cores': round((r1 - r0) / s.seconds, 2),
      },
      memory: {
        'gateway RSS MB': round(g1.rssBytes / MB, 1),
        'KB/conn (idle, after connect)': round((conn.rssBytes - base.rssBytes) / 1024 / Math.max(1, load.connected), 1),
      },
      targets: {
        rate: { target: `>= ${p.targetRate} pings/s`, value: Math.round(accepted), ok: accepted >= p.targetRate * 0.98 },
        'ack p99': p99Under(50, lat),
        'error rate': { target: '< 0.1%', value: round(errorRate * 100, 3), ok: errorRate < 0.001 },
      },
      notes: [
        ...(s.skipped > 0 ? [`${s.skipped} frames not offered: the socket already had 32 unacknowledged frames (the gateway fell behind)`] : []),
        ...(load.failed > 0 ? [`${load.failed} sockets failed to connect: ${load.firstError}`] : []),
        writeStatsNote(w0, w1),
        ...machineBusyNotes(m0, m1),
        ...(p.driverProcs > 1 ? [`driver sockets in forked load-generator processes: ${round(loadCores, 2)} cores`] : []),
        ...(Object.keys(s.errorCodes).length ? [`errors: ${JSON.stringify(s.errorCodes)}`] : []),
      ],
      extra: { ...s, ack: undefined, framesPerSec: round(s.framesAcked / s.seconds, 1), offered: p.rate },
    };
  } finally {
    for (const g of gws) await g.stop();
  }
}

export function main(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const rate = o.rate || (o.smoke ? 20_000 : 50_000);
  return runIngest(ctx, {
    name: 'ingest', batch: o.batch, rate, drivers: o.drivers || (o.smoke ? 200 : 1000),
    seconds: o.duration, warmupSeconds: o.smoke ? 1 : 3, targetRate: o.smoke ? rate : 50_000, gateways: o.ingestGateways, driverProcs: o.driverProcs,
  });
}
