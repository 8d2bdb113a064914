import { readFileSync } from 'node:fs';
import { Counter, register } from 'prom-client';

/**
 * Seconds a process's main thread (this one's: its event loop) has spent runnable but waiting for
 * a CPU, from Linux's /proc/PID/schedstat (second field, ns); undefined where there is none (other
 * systems, kernels without schedstats, a process that is gone).
 */
export function mainThreadCpuWaitSeconds(pid: number | 'self' = 'self'): number | undefined {
  try {
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]);
    return Number.isFinite(ns) ? ns / 1e9 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `<prefix>process_cpu_wait_seconds_total` on the global prom-client registry, next to the default
 * `process_cpu_seconds_total`: how long the event loop was ready to run but had no core. Its rate
 * is the share of each second a machine that is oversubscribed (other processes on the same cores)
 * adds to every request's and frame's latency; on an unshared machine it stays near 0. Absent
 * (no sample) where the system does not say. Registered once per prefix.
 */
export function registerCpuWaitMetric(prefix: string): void {
  const name = `${prefix}process_cpu_wait_seconds_total`;
  if (register.getSingleMetric(name)) return;
  let last = mainThreadCpuWaitSeconds();
  if (last === undefined) return;
  new Counter({
    name,
    help: 'Time the main (event-loop) thread was runnable but waiting for a CPU (Linux schedstat); a rising rate means the cores are oversubscribed',
    collect() {
      const now = mainThreadCpuWaitSeconds();
      if (now !== undefined && last !== undefined && now > last) this.inc(now - last);
      if (now !== undefined) last = now;
    },
  });
}
