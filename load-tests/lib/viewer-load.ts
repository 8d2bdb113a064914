/**
 * The subscriber side of the fan-out scenario: map clients in forked load-generator processes
 * (lib/conn-worker.ts), so that decoding hundreds of thousands of entity updates per second
 * does not stall the process that sends the pings and times their acks. Viewer i watches
 * tiles[i] on gateway i % urls.length; delays come back HdrHistogram-encoded, per gateway.
 */
import { forkGen, gensCpuSeconds, openedTotals, stopGens, type Gen, type OpenedTotals } from './gen-proc.js';
import { Latency } from './hist.js';

export interface ViewerMeasure {
  /** Delay per gateway (index of urls). */
  delayByGateway: Latency[];
  updates: number;
  frames: number;
  perViewer: { tile: string; updates: number }[];
}

export interface ViewerLoad extends OpenedTotals {
  /** Starts counting (on) or stops and returns what was counted since it started (off). */
  measure(on: boolean): Promise<ViewerMeasure>;
  forkedCpuSeconds(): number;
  close(): Promise<void>;
}

export async function openViewerLoad(urls: string[], tiles: readonly string[], procs: number): Promise<ViewerLoad> {
  const n = Math.max(1, procs);
  const gens: Gen[] = Array.from({ length: n }, forkGen);
  const part = (k: number): number[] => tiles.map((_, j) => j).filter((j) => j % n === k);
  const replies = await Promise.all(gens.map((g, k) => g.ask({
    cmd: 'open-viewers', urls, tiles: part(k).map((j) => tiles[j]!), gatewayOf: part(k).map((j) => j % urls.length),
  }, 300_000)));
  return {
    ...openedTotals(replies),
    async measure(on) {
      const replies2 = await Promise.all(gens.map((g) => g.ask({ cmd: 'measure', on }, 60_000)));
      const m: ViewerMeasure = { delayByGateway: urls.map(() => new Latency()), updates: 0, frames: 0, perViewer: [] };
      for (const r of replies2) {
        if (r.type !== 'measured') continue;
        r.delayByGateway.forEach((b64, i) => m.delayByGateway[i]!.addEncoded(b64));
        m.updates += r.updates;
        m.frames += r.frames;
        m.perViewer.push(...r.perViewer);
      }
      return m;
    },
    forkedCpuSeconds: () => gensCpuSeconds(gens),
    async close() {
      await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }, 120_000).catch(() => undefined)));
      await stopGens(gens);
    },
  };
}
