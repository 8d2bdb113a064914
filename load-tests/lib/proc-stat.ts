/** CPU seconds and RSS of a process from /proc (Linux). */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { mainThreadCpuWaitSeconds } from '../../src/lifecycle/cpu-wait-metric.js';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64/arm64
const PAGE = 4096;

export interface ProcSample { cpuSeconds: number; rssBytes: number }

export function procSample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  const rssPages = Number(f[21]);
  return { cpuSeconds: (utime + stime) / CLK_TCK, rssBytes: rssPages * PAGE };
}

/** Like procSample, but never throws (the process may have exited). */
export function tryProcSample(pid: number | undefined): ProcSample | undefined {
  if (!pid) return undefined;
  try { return procSample(pid); } catch { return undefined; }
}

export const MB = 1024 * 1024;

/** The whole machine's CPU time so far from /proc/stat (every core, in clock ticks). */
export interface MachineCpu { busy: number; total: number; /** Time the hypervisor gave to others (inside `busy`). */ steal: number }

export function machineCpu(): MachineCpu | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, x) => a + x, 0);
    const idle = v[3]! + v[4]!;
    return { busy: total - idle, total, steal: v[7]! };
  } catch {
    return undefined;
  }
}

/** Share of the machine's CPU time that was busy between two samples (0..1), or undefined. */
export function machineBusy(a: MachineCpu | undefined, b: MachineCpu | undefined): number | undefined {
  if (!a || !b || b.total <= a.total) return undefined;
  return (b.busy - a.busy) / (b.total - a.total);
}

/** A result note: how busy the whole machine was in the measured window (nothing when unknown). */
export function machineBusyNotes(a: MachineCpu | undefined, b: MachineCpu | undefined): string[] {
  const busy = machineBusy(a, b);
  if (busy === undefined) return [];
  const steal = (b!.steal - a!.steal) / (b!.total - a!.total);
  const stolen = steal >= 0.001 ? `, of which ${Math.round(steal * 1000) / 10} % stolen by the hypervisor` : '';
  return [`machine: ${Math.round(busy * 1000) / 10} % busy over its ${cpus().length} cores in the measured window (everything: system under test and load generators${stolen})`];
}

/**
 * Seconds the process's main thread has so far spent runnable but waiting for a CPU (the run
 * queue), or undefined (no schedstats, or it exited). On a shared machine it says how much of a
 * latency tail is a queue for the cores.
 */
export function runQueueWaitSeconds(pid: number | undefined): number | undefined {
  return pid ? mainThreadCpuWaitSeconds(pid) : undefined;
}
