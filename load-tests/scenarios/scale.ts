/**
 * Connection scale: D driver sockets and M map clients on ONE gateway. The clients live in
 * several forked load-generator processes (lib/conn-worker.ts), because one process cannot hold
 * more sockets than its open-files limit; drivers are spread over 127.0.0.x source addresses,
 * 10,000 per address, so the ephemeral port range never runs out. Reports memory per
 * connection (per kind), then a light activity phase (each driver pings about every 5 s, maps
 * watch z14 tiles): ack and delivery latency at that size, and what broke first.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, scenarioPrefix, sleep } from '../lib/context.js';
import type { WorkerCommand } from '../lib/conn-worker.js';
import { forkGen, gensCpuSeconds, openedTotals, stopGens } from '../lib/gen-proc.js';
import { Vehicle } from '../lib/drivers.js';
import { Latency, p99Under, round } from '../lib/hist.js';
import { MB, procSample, tryProcSample } from '../lib/proc-stat.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { startBenchGateway } from '../lib/stack.js';
import { tileKey, tileOf } from '../../src/geo/tiles.js';

const PER_WORKER = 8000;

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
  const W = Math.max(1, Math.ceil((D + M) / PER_WORKER));
  await cleanRedis(ctx.stack.redisUrl);
  const gw = await startBenchGateway({ stack: ctx.stack, keyPrefix: scenarioPrefix('scale') });
  const broke: string[] = [];
  const gwFd = fdLimitOf(gw.pid);
  if (gwFd && gwFd < D + M + 100) broke.push(`gateway open-files limit ${gwFd} (hard limit, not raisable here) < ${D + M} connections + Redis/PostgreSQL sockets`);
  const gens = Array.from({ length: W }, forkGen);
  try {
    await sleep(500);
    const base = procSample(gw.pid);
    progress(`scale: ${D} drivers + ${M} maps over ${W} load-generator processes (gateway fd limit ${gwFd})`);
    const t0 = performance.now();
    const per = (total: number, i: number): number => Math.floor(total / W) + (i < total % W ? 1 : 0);
    let offset = 0;
    const drvReplies = await Promise.all(gens.map((g, i) => {
      const n = per(D, i);
      const cmd: WorkerCommand = { cmd: 'open-drivers', url: gw.url, drivers: n, driverOffset: offset, perAddress: 10_000, prefix: 'sc' };
      offset += n;
      return g.ask(cmd, 300_000);
    }));
    const driversSecs = (performance.now() - t0) / 1000;
    const { ok: drvOk, failed: drvFailed, firstError: drvErr } = openedTotals(drvReplies);
    if (drvFailed) broke.push(`drivers: ${drvFailed} of ${D} failed to connect (after ${drvOk} succeeded), first error: ${drvErr}`);
    await sleep(1000);
    const afterDrivers = tryProcSample(gw.pid);
    progress(`scale: ${drvOk} drivers connected in ${round(driversSecs, 1)} s`);
    const tiles = Array.from({ length: M }, (_, j) => { const v = new Vehicle(`t${j}`); return tileKey(tileOf(v.lon, v.lat, 14)); });
    const t1 = performance.now();
    let k = 0;
    const mapReplies = await Promise.all(gens.map((g, i) => { const n = per(M, i); const t = tiles.slice(k, k + n); k += n; return g.ask({ cmd: 'open-maps', url: gw.url, tiles: t }, 300_000); }));
    const mapsSecs = (performance.now() - t1) / 1000;
    const { ok: mapOk, failed: mapFailed, firstError: mapErr } = openedTotals(mapReplies);
    if (mapFailed) broke.push(`maps: ${mapFailed} of ${M} failed (after ${mapOk} succeeded), first error: ${mapErr}`);
    await sleep(1000);
    const afterMaps = tryProcSample(gw.pid);
    if (!afterMaps) broke.push('gateway process exited while connecting');
    // Activity: every driver pings about every 5 s.
    const rate = Math.max(1, Math.round(drvOk / 5));
    const secs = Math.max(5, Math.min(o.duration, 30));
    const act = await Promise.all(gens.map((g) => g.ask({ cmd: 'activity', rate: Math.max(1, Math.round(rate / W)), seconds: secs }, (secs + 60) * 1000)));
    const end = tryProcSample(gw.pid);
    const genCpu = gensCpuSeconds(gens);
    if (!end && afterMaps) broke.push('gateway process exited during the activity phase');
    const ack = new Latency();
    const delay = new Latency();
    let accepted = 0; let failures = 0; let updates = 0; let starvedN = 0;
    const codes: Record<string, number> = {};
    for (const r of act) {
      if (r.type !== 'activity') continue;
      ack.addEncoded(r.ack); delay.addEncoded(r.delay);
      accepted += r.pingsAccepted; failures += r.frameFailures; updates += r.updates; starvedN += r.starved;
      for (const [c, n] of Object.entries(r.errorCodes)) codes[c] = (codes[c] ?? 0) + n;
    }
    const a = ack.summary();
    const d = delay.summary();
    if (failures) broke.push(`${failures} frames failed (socket closed): ${JSON.stringify(codes)}`);
    const sentApprox = rate * secs;
    if (accepted < sentApprox * 0.9) broke.push(`only ${accepted} of ~${sentApprox} pings accepted during the activity phase: ${JSON.stringify(codes)}`);
    if (a.p99 >= 50) broke.push(`ack p99 ${a.p99} ms >= 50 ms at this size`);
    if (d.count && d.p99 >= 50) broke.push(`delivery p99 ${d.p99} ms >= 50 ms at this size`);
    await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }, 120_000).catch(() => undefined)));
    const kbDriver = afterDrivers ? (afterDrivers.rssBytes - base.rssBytes) / 1024 / Math.max(1, drvOk) : NaN;
    const kbMap = afterDrivers && afterMaps ? (afterMaps.rssBytes - afterDrivers.rssBytes) / 1024 / Math.max(1, mapOk) : NaN;
    return {
      scenario: 'scale',
      load: `${drvOk}/${D} drivers + ${mapOk}/${M} map clients on one gateway (${W} client processes); then ${rate} pings/s for ${secs}s`,
      latency: a,
      latencyOf: 'ack latency during the activity phase (ms)',
      throughput: { value: Math.round(drvOk / driversSecs), unit: 'driver connects/s' },
      cpu: {
        'gateway cores (activity)': end && afterMaps ? round((end.cpuSeconds - afterMaps.cpuSeconds) / secs, 2) : NaN,
        'load generators CPU s (whole scenario)': round(genCpu, 1),
      },
      memory: {
        'gateway RSS MB': round(((end ?? afterMaps ?? afterDrivers)?.rssBytes ?? 0) / MB, 1),
        'KB/driver conn': round(kbDriver, 2),
        'KB/map conn': mapOk > 0 ? round(kbMap, 2) : NaN,
      },
      targets: {
        'all connected': { target: `${D + M}`, value: drvOk + mapOk, ok: drvOk + mapOk === D + M },
        'ack p99': p99Under(50, a),
        'delivery p99': p99Under(50, d),
      },
      notes: [
        `maps connected in ${round(mapsSecs, 1)} s; ${accepted} pings accepted; delivery p50/p99 ${d.p50}/${d.p99} ms over ${updates} updates; starved ${starvedN}`,
        ...(Object.keys(codes).length ? [`activity errors: ${JSON.stringify(codes)}`] : []),
        broke.length ? `what broke first: ${broke[0]}` : 'nothing broke',
        ...broke.slice(1),
      ],
      extra: { delay: d, errorCodes: codes, broke, gatewayFdLimit: gwFd, driversSecs, mapsSecs, workers: W, pingsAccepted: accepted, updates },
    };
  } finally {
    await stopGens(gens);
    await gw.stop();
  }
}
