/**
 * The driver side of the ingest scenarios: sockets opened and driven either in the runner itself
 * (procs = 1) or in forked load-generator processes (lib/conn-worker.ts), so that sending and
 * timing 20,000 frames/s is not delayed by one busy event loop (the figures must measure the
 * gateway, not the load generator). Ack latencies come back HdrHistogram-encoded and merge.
 */
import type { DriverClient } from '../../src/clients/driver-client.js';
import { closeDrivers, emptySendStats, openDrivers, sendAtRate, type SendStats, type Vehicle } from './drivers.js';
import { forkGen, gensCpuSeconds, openedTotals, stopGens, type Gen } from './gen-proc.js';

export interface DriverLoad {
  connected: number;
  failed: number;
  firstError?: string;
  /** Sends at `rate` pings/s in total for `seconds`, `batch` pings per frame. */
  run(rate: number, batch: number, seconds: number, label: string): Promise<SendStats>;
  /** CPU seconds used so far by forked load generators (0 when in-process). */
  forkedCpuSeconds(): number;
  close(): Promise<void>;
}

export async function openDriverLoad(urls: string[], drivers: number, procs: number, prefix: string): Promise<DriverLoad> {
  if (procs <= 1) {
    const parts = await Promise.all(urls.map((u, i) => openDrivers(u, share(drivers, urls.length, i), { prefix: `${prefix}${i}`, encoding: 'msgpack' })));
    const clients: DriverClient[] = parts.flatMap((x) => x.clients);
    const vehicles: Vehicle[] = parts.flatMap((x) => x.vehicles);
    return {
      connected: clients.length,
      failed: parts.reduce((a, x) => a + x.failed, 0),
      firstError: parts.map((x) => x.firstError).find(Boolean),
      run: (rate, batch, seconds, label) => sendAtRate(clients, vehicles, { rate, batch, seconds, label }),
      forkedCpuSeconds: () => 0,
      close: () => closeDrivers(clients),
    };
  }
  const n = Math.max(procs, urls.length);
  const gens: Gen[] = Array.from({ length: n }, forkGen);
  let offset = 0;
  const replies = await Promise.all(gens.map((g, k) => {
    const count = share(drivers, n, k);
    const cmd = { cmd: 'open-drivers' as const, url: urls[k % urls.length]!, drivers: count, driverOffset: offset, perAddress: 10_000, prefix };
    offset += count;
    return g.ask(cmd, 300_000);
  }));
  const opened = replies.map((r) => openedTotals([r]));
  const total = openedTotals(replies);
  return {
    connected: total.ok,
    failed: total.failed,
    firstError: total.firstError,
    async run(rate, batch, seconds, label) {
      const results = await Promise.all(gens.map((g, k) => g.ask({
        cmd: 'activity', rate: (rate * opened[k]!.ok) / Math.max(1, total.ok), batch, seconds, label: `${label} [${k + 1}/${n}]`,
      }, (seconds + 60) * 1000)));
      const s = emptySendStats();
      for (const r of results) {
        if (r.type !== 'activity') continue;
        s.ack.addEncoded(r.ack);
        s.framesSent += r.framesSent; s.pingsSent += r.pingsSent; s.framesAcked += r.framesAcked; s.pingsAccepted += r.pingsAccepted;
        s.pingErrors += r.pingErrors; s.frameFailures += r.frameFailures; s.skipped += r.skipped;
        s.seconds = Math.max(s.seconds, r.seconds);
        for (const [c, x] of Object.entries(r.errorCodes)) s.errorCodes[c] = (s.errorCodes[c] ?? 0) + x;
      }
      return s;
    },
    forkedCpuSeconds: () => gensCpuSeconds(gens),
    async close() {
      await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }, 120_000).catch(() => undefined)));
      await stopGens(gens);
    },
  };
}

function share(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}
