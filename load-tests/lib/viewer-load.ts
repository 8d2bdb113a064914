/**
 * The subscriber side of the fan-out scenario: map clients in forked load-generator processes
 * (lib/conn-worker.ts), so that decoding hundreds of thousands of entity updates per second
 * does not stall the process that sends the pings and times their acks. Viewer i watches
 * tiles[i] on gateway i % urls.length; delays come back HdrHistogram-encoded, per gateway.
 * With `sampled` < tiles.length only that many viewers, spread evenly over the list (so over the
 * tiles and gateways), are MapClients that measure; the others are sinks
 * (lib/sink-viewer.ts) that the gateways serve alike but that only count their frames; the
 * MapClients then have a process of their own and the sinks `procs` others, or, with
 * `nativeSinks` (the executable of lib/native-sinks.ts and its reading pace), all of one native
 * process.
 */
import { nativeSinkGen } from './native-sinks.js';
import { forkGen, gensCpuSeconds, openedTotals, stopGens, type Gen, type OpenedTotals } from './gen-proc.js';
import { Latency } from './hist.js';

export interface ViewerMeasure {
  /** Delay per gateway (index of urls). */
  delayByGateway: Latency[];
  /** Entity updates and frames received by the MapClients (the sampled viewers). */
  updates: number;
  frames: number;
  /** Sinks open, and the frames they received. */
  sinks: number;
  sinkFrames: number;
  perViewer: { tile: string; frames: number }[];
}

export interface ViewerLoad extends OpenedTotals {
  /** Starts counting (on) or stops and returns what was counted since it started (off). */
  measure(on: boolean): Promise<ViewerMeasure>;
  forkedCpuSeconds(): number;
  /** The part of forkedCpuSeconds() used by the processes holding sinks. */
  sinksCpuSeconds(): number;
  /** Forked processes holding the viewers. */
  processes: number;
  /** Process ids of the forked processes that hold MapClients (the ones that measure). */
  measuringPids: number[];
  close(): Promise<void>;
}

/**
 * Whether viewer j of n is one of the `sampled` MapClients. Viewer j is on gateway j % gateways:
 * the sample is split evenly between the gateways, and evenly spread within each one's viewers.
 */
export function isSampled(j: number, n: number, sampled: number, gateways: number): boolean {
  if (sampled >= n) return true;
  const g = j % gateways;
  const k = Math.floor((sampled * (g + 1)) / gateways) - Math.floor((sampled * g) / gateways);
  const ng = Math.ceil((n - g) / gateways);
  const idx = Math.floor(j / gateways);
  return Math.floor(((idx + 1) * k) / ng) > Math.floor((idx * k) / ng);
}

export async function openViewerLoad(urls: string[], tiles: readonly string[], procs: number, sampled = tiles.length, nativeSinks?: { binary: string; readEveryMs: number }): Promise<ViewerLoad> {
  const n = Math.max(1, procs);
  const sinkOf = tiles.map((_, j) => !isSampled(j, tiles.length, sampled, urls.length));
  const all = tiles.map((_, j) => j);
  const sinks = all.filter((j) => sinkOf[j]);
  const roundRobin = (xs: number[]): number[][] => Array.from({ length: n }, (_, k) => xs.filter((_, i) => i % n === k));
  // Without sinks: viewers round-robin over n processes. With sinks: the MapClients that measure
  // get a process of their own (its event loop, lightly loaded, stamps their arrivals), the sinks
  // are spread over n more (or all held by one native process).
  const sinkParts = nativeSinks ? [sinks] : roundRobin(sinks);
  const parts: number[][] = sinks.length === 0
    ? roundRobin(all)
    : [all.filter((j) => !sinkOf[j]), ...sinkParts].filter((p) => p.length > 0);
  const holdsSinks = parts.map((p) => p.length > 0 && sinkOf[p[0]!]!);
  const gens: Gen[] = parts.map((_, k) => (nativeSinks && holdsSinks[k] ? nativeSinkGen(nativeSinks.binary, { readEveryMs: nativeSinks.readEveryMs }) : forkGen()));
  const replies = await Promise.all(gens.map((g, k) => g.ask({
    cmd: 'open-viewers', urls, tiles: parts[k]!.map((j) => tiles[j]!), gatewayOf: parts[k]!.map((j) => j % urls.length),
    sinkOf: parts[k]!.map((j) => sinkOf[j]!),
  }, 300_000)));
  return {
    ...openedTotals(replies),
    async measure(on) {
      const replies2 = await Promise.all(gens.map((g) => g.ask({ cmd: 'measure', on }, 60_000)));
      const m: ViewerMeasure = { delayByGateway: urls.map(() => new Latency()), updates: 0, frames: 0, sinks: 0, sinkFrames: 0, perViewer: [] };
      for (const r of replies2) {
        if (r.type !== 'measured') continue;
        r.delayByGateway.forEach((b64, i) => m.delayByGateway[i]!.addEncoded(b64));
        m.updates += r.updates;
        m.frames += r.frames;
        m.sinks += r.sinks;
        m.sinkFrames += r.sinkFrames;
        m.perViewer.push(...r.perViewer);
      }
      return m;
    },
    forkedCpuSeconds: () => gensCpuSeconds(gens),
    sinksCpuSeconds: () => gensCpuSeconds(gens.filter((_, k) => holdsSinks[k])),
    processes: gens.length,
    measuringPids: gens.filter((g, k) => !holdsSinks[k] && g.proc.pid !== undefined).map((g) => g.proc.pid!),
    async close() {
      await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }, 120_000).catch(() => undefined)));
      await stopGens(gens);
    },
  };
}
