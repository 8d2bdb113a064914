/**
 * Connection scale: D driver sockets and M map clients on ONE gateway (drivers spread over
 * 127.0.0.x source addresses, 10,000 per address, so the ephemeral port range never runs out).
 * Memory per connection (per kind), then a light activity phase (each driver pings about every
 * 5 s, maps watch z14 tiles): ack and delivery latency at that size, and what broke first.
 */
import { readFileSync } from 'node:fs';
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, scenarioPrefix, sleep } from '../lib/context.js';
import { closeDrivers, openDrivers, sendAtRate } from '../lib/drivers.js';
import { round } from '../lib/hist.js';
import { closeViewers, openViewers, starved } from '../lib/maps.js';
import { MB, procSample, tryProcSample } from '../lib/proc-stat.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { startBenchGateway } from '../lib/stack.js';
import { tileKey, tileOf } from '../../src/geo/tiles.js';

function fdLimitOf(pid: number): number {
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

export async function main(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const D = o.scaleDrivers;
  const M = o.scaleMaps;
  await cleanRedis(ctx.stack.redisUrl);
  const gw = await startBenchGateway({ stack: ctx.stack, keyPrefix: scenarioPrefix('scale') });
  const broke: string[] = [];
  const gwFd = fdLimitOf(gw.pid);
  if (gwFd && gwFd < D + M + 100) broke.push(`gateway open-files limit ${gwFd} < ${D + M} connections`);
  try {
    await sleep(500);
    const base = procSample(gw.pid);
    progress(`scale: ${D} drivers (gateway fd limit ${gwFd})`);
    const t0 = performance.now();
    const drv = await openDrivers(gw.url, D, { prefix: 'sc', encoding: 'msgpack', concurrency: 200, perAddress: 10_000, deadlineMs: 180_000 });
    const driversSecs = (performance.now() - t0) / 1000;
    if (drv.failed) broke.push(`drivers: ${drv.failed} of ${D} failed to connect, first error: ${drv.firstError}`);
    await sleep(1000);
    const afterDrivers = procSample(gw.pid);
    progress(`scale: ${drv.clients.length} drivers connected in ${round(driversSecs, 1)} s; ${M} map clients`);
    const tiles = Array.from({ length: M }, (_, j) => { const v = drv.vehicles[j % Math.max(1, drv.vehicles.length)]!; return tileKey(tileOf(v.lon, v.lat, 14)); });
    const t1 = performance.now();
    const vs = await openViewers([gw.url], tiles, { concurrency: 64, deadlineMs: 180_000 });
    const mapsSecs = (performance.now() - t1) / 1000;
    if (vs.failed) broke.push(`maps: ${vs.failed} of ${M} failed, first error: ${vs.firstError}`);
    await sleep(1000);
    const afterMaps = procSample(gw.pid);
    // Activity: every driver pings about every 5 s.
    const rate = Math.max(1, Math.round(drv.clients.length / 5));
    vs.measuring = true;
    const s = await sendAtRate(drv.clients, drv.vehicles, { rate, batch: 1, seconds: Math.max(5, Math.min(o.duration, 30)), label: 'scale activity' });
    await sleep(300);
    vs.measuring = false;
    const end = tryProcSample(gw.pid);
    if (!end) broke.push('gateway process exited');
    const ack = s.ack.summary();
    const delay = vs.delay.summary();
    if (s.frameFailures) broke.push(`${s.frameFailures} frames failed (socket closed): ${JSON.stringify(s.errorCodes)}`);
    if (ack.p99 >= 50) broke.push(`ack p99 ${ack.p99} ms >= 50 ms at this size`);
    if (delay.count && delay.p99 >= 50) broke.push(`delivery p99 ${delay.p99} ms >= 50 ms at this size`);
    const st = starved(vs.viewers);
    await closeViewers(vs.viewers);
    await closeDrivers(drv.clients);
    const kbDriver = (afterDrivers.rssBytes - base.rssBytes) / 1024 / Math.max(1, drv.clients.length);
    const kbMap = (afterMaps.rssBytes - afterDrivers.rssBytes) / 1024 / Math.max(1, vs.viewers.length);
    return {
      scenario: 'scale',
      load: `${drv.clients.length}/${D} drivers + ${vs.viewers.length}/${M} map clients on one gateway; then ${rate} pings/s for ${round(s.seconds, 0)}s`,
      latency: ack,
      latencyOf: 'ack latency during the activity phase (ms)',
      throughput: { value: Math.round(drv.clients.length / driversSecs), unit: 'driver connects/s' },
      cpu: { 'gateway cores (activity)': end ? round((end.cpuSeconds - afterMaps.cpuSeconds) / s.seconds, 2) : NaN },
      memory: {
        'gateway RSS MB': round((end ?? afterMaps).rssBytes / MB, 1),
        'KB/driver conn': round(kbDriver, 2),
        'KB/map conn': round(kbMap, 2),
      },
      targets: {
        'all connected': { target: `${D + M}`, value: drv.clients.length + vs.viewers.length, ok: drv.clients.length + vs.viewers.length === D + M },
        'ack p99': { target: '< 50 ms', value: ack.p99, ok: ack.p99 < 50 },
        'delivery p99': { target: '< 50 ms', value: delay.p99, ok: delay.p99 < 50 },
      },
      notes: [
        `maps connected in ${round(mapsSecs, 1)} s; delivery p50/p99 ${delay.p50}/${delay.p99} ms over ${delay.count} updates; starved ${st.starved}`,
        broke.length ? `what broke first: ${broke[0]}` : 'nothing broke',
        ...broke.slice(1),
      ],
      extra: { delay, starved: st, broke, gatewayFdLimit: gwFd, driversSecs, mapsSecs },
    };
  } finally {
    await gw.stop();
  }
}
