/** CPU seconds and RSS of a process from /proc (Linux). */
import { readFileSync } from 'node:fs';

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
