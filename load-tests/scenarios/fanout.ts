/**
 * Fan-out: drivers ping (one ping per frame, or fleet feeds with --fleet k: one frame holds the
 * current ping of k vehicles) into gateway A (--driver-gateways n: spread over the first n
 * gateways, as a load balancer would); map subscribers on gateways A and
 * B (socket.io, Redis adapter between them) watch z14 tiles where drivers are. Reports
 * ping-to-subscriber delay (subscriber arrival − the ping's ts), delivered entity updates/s,
 * gateway CPU per delivered update, and starved subscribers.
 *
 * With --target the gateways run elsewhere (the load generator then has this machine to itself):
 * nothing is started or flushed here, and the gateways' CPU and RSS come from their /metrics.
 */
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, redisCpuSeconds, redisPid, scenarioPrefix, sleep } from '../lib/context.js';
import { closeDrivers, openDrivers, sendAtRate } from '../lib/drivers.js';
import { p99Under, round } from '../lib/hist.js';
import { starved, viewerDelay } from '../lib/maps.js';
import { openViewerLoad } from '../lib/viewer-load.js';
import { nativeSinkBinary } from '../lib/native-sinks.js';
import { MB, machineBusyNotes, machineCpu, procSample, runQueueWaitSeconds } from '../lib/proc-stat.js';
import { checkRealtimeAllowed, lowerIfLeftRaised, raiseToRealtime, type RealtimeProcess } from '../lib/realtime.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { startBenchGateway, type GatewayChild } from '../lib/stack.js';
import { processStats, writeStats, writeStatsNote } from '../lib/gateway-metrics.js';
import { tileKey, tileOf } from '../../src/geo/tiles.js';

/** What the fan-out scenario reads before and after its measured part (lib/proc-stat, /metrics, INFO). */
interface Counters { at: number; mc: ReturnType<typeof machineCpu>; h: number; k: number; c: Awaited<ReturnType<Gateway['stats']>>[]; r: number; w: Awaited<ReturnType<typeof writeStats>>; q: (number | undefined)[] }

export const FANOUT_ZOOM = 14;

/** Unmeasured seconds at the full rate before the measured window: 1 s for short runs, up to 5 s. */
export function fanoutWarmupSeconds(durationSeconds: number): number {
  return Math.min(5, Math.max(1, Math.floor(durationSeconds / 6)));
}

/** A gateway under test: started here, or running elsewhere (--target). */
interface Gateway {
  url: string;
  /** Local gateways only. */
  pid?: number;
  /** CPU, RSS and (where known) the main thread's time waiting for a core, all cumulative. */
  stats(): Promise<{ cpuSeconds: number; rssBytes: number; cpuWaitSeconds?: number }>;
  stop(): Promise<unknown>;
}

const local = (g: GatewayChild): Gateway => ({ url: g.url, pid: g.pid, stats: async () => ({ ...procSample(g.pid), cpuWaitSeconds: runQueueWaitSeconds(g.pid) }), stop: () => g.stop() });
const remote = (url: string): Gateway => ({ url, stats: () => processStats(url), stop: async () => undefined });

export async function main(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const rate = o.rate || (o.smoke ? 2000 : 10_000);
  const drivers = o.drivers || (o.smoke ? 400 : 2000);
  const fleet = o.fleet;
  const sockets = Math.ceil(drivers / fleet);
  const subs = o.subscribers;
  const target = o.targetGateways;
  // Redis for its CPU figure: the local stack's, or --target-redis (none: not reported).
  const redisUrl = target ? o.targetRedis : ctx.stack.redisUrl;
  const redisCpu = async (): Promise<number> => (redisUrl ? redisCpuSeconds(redisUrl) : NaN);
  const gws: Gateway[] = [];
  if (o.realtime) checkRealtimeAllowed();
  let lowerAgain = (): void => undefined;
  try {
    if (target) {
      for (const url of target) gws.push(remote(url));
      await Promise.all(gws.map((g) => g.stats().then((s) => { if (!Number.isFinite(s.cpuSeconds)) throw new Error(`${g.url}/metrics has no geoflux_process_cpu_seconds_total: is it a geoflux gateway?`); })));
    } else {
      await cleanRedis(ctx.stack.redisUrl);
      const prefix = scenarioPrefix('fanout');
      for (let i = 0; i < o.gateways; i++) gws.push(local(await startBenchGateway({ stack: ctx.stack, keyPrefix: prefix }, `gateway-${i}`)));
    }
    const nd = Math.min(o.driverGateways, gws.length);
    const ingestGws = gws.slice(0, nd);
    const driversOn = nd > 1 ? `gateways 0-${nd - 1}` : 'gateway 0';
    progress(`fanout: ${drivers} drivers on ${driversOn}${fleet > 1 ? ` (${sockets} fleet feeds of ${fleet})` : ''}, ${subs} subscribers over ${gws.length} gateways`);
    const opened = await openDrivers(ingestGws.map((g) => g.url), sockets, { prefix: 'fo', encoding: 'msgpack', concurrency: 128, fleet });
    // Each subscriber watches the z14 tile a driver is in: every subscribed tile has traffic.
    const tiles = Array.from({ length: subs }, (_, j) => {
      const v = opened.vehicles[j % opened.vehicles.length]!;
      return tileKey(tileOf(v.lon, v.lat, FANOUT_ZOOM));
    });
    // Viewers live in forked processes (--viewer-procs): decoding every entity update must not
    // stall the process that sends the pings, or the figures would measure the load generator.
    // --sample n: n MapClients measure, the rest of the audience are sinks (lib/sink-viewer.ts).
    // --sinks native (default): all sinks in one native process; falls back to Node sinks, and says so.
    const sampled = o.sample > 0 ? Math.min(o.sample, subs) : subs;
    const native = sampled < subs && o.sinks === 'native' ? nativeSinkBinary() : {};
    if (native.why) progress(`fanout: native sinks unavailable (${native.why}); sinks run in Node`);
    const viewers = await openViewerLoad(gws.map((g) => g.url), tiles, o.viewerProcs, sampled, native.path ? { binary: native.path, readEveryMs: o.sinkReadMs } : undefined);
    try {
      if (viewers.ok === 0) throw new Error(`no subscriber connected: ${viewers.firstError}`);
      // Local processes besides the gateways whose main thread's wait for a CPU is reported;
      // --realtime raises them and the local gateways.
      const redis: RealtimeProcess | undefined = target ? undefined : { label: 'redis', pid: await redisPid(ctx.stack.redisUrl) };
      const watched: RealtimeProcess[] = [...(redis ? [redis] : []), ...viewers.measuringPids.map((pid) => ({ label: 'MapClients', pid }))];
      if (redis && lowerIfLeftRaised(redis)) progress('fanout: the bench Redis was still at real-time priority (an interrupted --realtime run): lowered to normal first');
      if (o.realtime) lowerAgain = raiseToRealtime([...gws.flatMap((g, i) => (g.pid ? [{ label: `gateway-${i}`, pid: g.pid }] : [])), ...watched]);
      const send = { rate, batch: fleet, fleet };
      // Warm-up, not measured: rooms go hot, JIT, the first backlog drains (a 1 s warm-up left
      // its backlog in the first measured seconds of the full size: ack p99 340-550 ms there).
      // The pings flow on unbroken into the measured part, and the counters (the gateways'
      // /metrics, Redis INFO) are read 1.5 s before it: a pause between the two and those reads
      // at its start made the first measured second the worst of most runs (docs/benchmarks.md,
      // seventh session). While a warm-up goes on past its set time (a start-up backlog), they are
      // read again then and every 1.5 s, so the last read stays within 1.5 s of the start. CPU figures are
      // rates over their own window.
      const warmup = fanoutWarmupSeconds(o.duration);
      const takeCounters = async (): Promise<Counters> => {
        const at = performance.now();
        const mc = machineCpu();
        const h = viewers.forkedCpuSeconds();
        const k = viewers.sinksCpuSeconds();
        const q = watched.map((p) => runQueueWaitSeconds(p.pid));
        const [c, r, w] = await Promise.all([Promise.all(gws.map((g) => g.stats())), redisCpu(), writeStats(ingestGws)]);
        return { at, mc, h, k, c, r, w, q };
      };
      let before: Promise<Counters> | undefined;
      let measuring: Promise<unknown> | undefined;
      let reread: NodeJS.Timeout | undefined;
      const early = setTimeout(() => { before = takeCounters(); }, Math.max(0, warmup - 1.5) * 1000);
      // Past the set warm-up (the measured part would have started at once if it could).
      const late = setTimeout(() => { reread = setInterval(() => { before = takeCounters(); }, 1500); before = takeCounters(); }, (warmup + 0.2) * 1000);
      const s = await sendAtRate(opened.clients, opened.vehicles, {
        ...send, seconds: o.duration, label: 'fanout', warmupSeconds: warmup, onMeasureStart: () => { clearTimeout(late); clearInterval(reread); measuring = viewers.measure(true); },
      });
      clearTimeout(early);
      clearTimeout(late);
      clearInterval(reread);
      if (!before || !measuring) throw new Error('fanout: the measured part never started');
      const { at: t0, mc: mc0, h: h0, k: k0, c: c0, r: r0, w: w0, q: q0 } = await before;
      await measuring;
      await sleep(300);
      const { at: t1, mc: mc1, h: h1, k: k1, c: c1, r: r1, w: w1, q: q1 } = await takeCounters();
      const m = await viewers.measure(false);
      /** The latency window (measured sends + 300 ms), and the counters' window (1.5 s longer). */
      const secs = s.seconds + 0.3;
      const cpuSecs = (t1 - t0) / 1000;
      const gwCpu = c1.reduce((a, x, i) => a + x.cpuSeconds - c0[i]!.cpuSeconds, 0);
      const st = starved(m.perViewer);
      const lat = viewerDelay(m).summary();
      // Sinks do not decode: their entity updates are estimated from the MapClients' entities per frame.
      const perFrame = m.updates / Math.max(1, m.frames);
      const updates = m.updates + Math.round(m.sinkFrames * perFrame);

      await closeDrivers(opened.clients);
      return {
        scenario: 'fanout',
        load: `${o.realtime ? '[--realtime] ' : ''}${s.pingsAccepted ? Math.round(s.pingsAccepted / s.seconds) : 0} pings/s (offered ${rate}) from ${opened.vehicles.length} drivers${nd > 1 ? ` on ${nd} gateways` : ''}${fleet > 1 ? ` in ${opened.clients.length} fleet feeds of ${fleet} (one frame = one current ping of each)` : ' (one socket each, one ping per frame)'}; ${viewers.ok} subscribers (z${FANOUT_ZOOM} tiles${m.sinks ? `; ${viewers.ok - m.sinks} MapClients measure, ${m.sinks} ${native.path ? 'native ' : ''}sinks count frames` : ''}) on ${gws.length} gateways${target ? ` running elsewhere (${target.join(', ')})` : ''}; ${o.duration}s after ${round(s.warmupSeconds, 1)}s warm-up${s.warmupSeconds > warmup + 0.05 ? ` (${warmup}s, then on until the acks kept pace with the offered rate${s.warmupCapped ? ': capped, they never did' : ''})` : ''}`,
        latency: lat,
        latencyOf: "ping's ts → entity update at subscriber (ms, coalescing included)",
        throughput: { value: Math.round(updates / secs), unit: `entity updates/s delivered${m.sinks ? ' (sinks\' estimated)' : ''}` },
        ratios: ctx.ceilings.uwsEchoMsgsPerSec ? { 'uWS echo (frames)': round((m.frames + m.sinkFrames) / secs / ctx.ceilings.uwsEchoMsgsPerSec, 4) } : {},
        cpu: {
          'gateways µs/update': round(((gwCpu / cpuSecs) * 1e6) / Math.max(1, updates / secs), 2),
          'gateways cores': round(gwCpu / cpuSecs, 2),
          ...(Number.isFinite(r1 - r0) ? { 'redis cores': round((r1 - r0) / cpuSecs, 2) } : {}),
        },
        memory: Object.fromEntries(c1.map((x, i) => [`gateway-${i} RSS MB`, round(x.rssBytes / MB, 1)])),
        targets: {
          // A load generator that fell behind (starved of CPU, e.g. by --realtime with one socket
          // per driver) stamps its pings late in a tick: its latencies measure the harness.
          'offered load sent': loadSent(s.pingsAccepted / s.seconds, rate),
          'delivery p99': p99Under(50, lat),
          'starved subscribers': { target: '0', value: st.starved, ok: st.starved === 0 },
          'ack p99': p99Under(50, s.ack.summary()),
        },
        notes: [
          `delivery p50/p99 by subscriber gateway: ${m.delayByGateway.map((h, i) => { const x = h.summary(); return `gateway-${i}${i >= nd ? ' (via Redis)' : nd > 1 ? ' (some drivers here)' : ' (drivers here)'} ${x.p50}/${x.p99} ms`; }).join(', ')}`,
          `frames ${m.frames + m.sinkFrames}${m.sinks ? ` (MapClients ${m.frames}, sinks ${m.sinkFrames})` : ''}, ${round(perFrame, 1)} entities/frame; tiles with traffic ${st.activeTiles}; median frames per subscriber ${st.medianPerViewer}, min on an active tile ${st.minPerActive}`,
          `ack p50/p99 ${s.ack.summary().p50}/${s.ack.summary().p99} ms; ${nd > 1 ? driversOn : 'gateway-0'} ${writeStatsNote(w0, w1)}`,
          `subscribers in ${viewers.processes} load-generator processes${m.sinks ? ` (the MapClients in one of their own; the sinks ${native.path ? `in one native process, load-tests/sink/sink.c${o.sinkReadMs ? `, reading every ${o.sinkReadMs} ms` : ''}` : 'in forked Node processes'})` : ''}: ${round((h1 - h0) / cpuSecs, 2)} cores${m.sinks ? ` (sinks ${round((k1 - k0) / cpuSecs, 2)})` : ''}`,
          ...(target ? [] : machineBusyNotes(mc0, mc1)),
          ...cpuWaitNotes([
            ...gws.map((_, i) => ({ label: `gateway-${i}`, before: c0[i]!.cpuWaitSeconds, after: c1[i]!.cpuWaitSeconds })),
            ...watched.map((p, i) => ({ label: p.label, before: q0[i], after: q1[i] })),
          ], cpuSecs, o.realtime ? 'realtime' : target ? 'target' : 'normal'),
          ...(viewers.failed ? [`${viewers.failed} subscribers failed: ${viewers.firstError}`] : []),
          ...(opened.failed ? [`${opened.failed} drivers failed: ${opened.firstError}`] : []),
        ],
        extra: { delayByGateway: m.delayByGateway.map((h) => h.summary()), starved: st, frames: m.frames, sinkFrames: m.sinkFrames, sinks: m.sinks, updates, updatesDecoded: m.updates, pingsAccepted: s.pingsAccepted, ack: s.ack.summary() },
      };
    } finally {
      await viewers.close();
    }
  } finally {
    for (const g of gws) await g.stop();
    lowerAgain();
  }
}

/** The target row for the offered load: at least 97 % of it accepted, or the other figures do not stand. */
export function loadSent(acceptedPerSec: number, offeredPerSec: number): { target: string; value: string; ok: boolean } {
  const share = offeredPerSec > 0 ? acceptedPerSec / offeredPerSec : 0;
  return { target: '≥ 97 % accepted', value: `${Math.round(share * 1000) / 10} %`, ok: share >= 0.97 };
}

/** A result note: how long each process's main thread waited for a CPU, per second of the window. */
function cpuWaitNotes(waits: readonly { label: string; before?: number; after?: number }[], secs: number, mode: 'normal' | 'realtime' | 'target'): string[] {
  const parts = waits.flatMap((x) => (x.before === undefined || x.after === undefined || !Number.isFinite(x.after - x.before) ? [] : [`${x.label} ${Math.round(((x.after - x.before) / secs) * 1000)}`]));
  if (parts.length === 0) return [];
  const how = {
    realtime: 'these ran at real-time priority (--realtime): the ping sender and the sinks got the CPU they left',
    target: "the gateways' from their /metrics (geoflux_process_cpu_wait_seconds_total, on their machine)",
    normal: 'every process at normal priority, the load generators included',
  }[mode];
  return [`waiting for a CPU (main thread, ms per second of the window): ${parts.join(', ')}; ${how}`];
}
