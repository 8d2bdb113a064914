/** Forked load-generator processes (lib/conn-worker.ts), asked over IPC. */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import type { WorkerCommand, WorkerReply } from './conn-worker.js';
import { tryProcSample } from './proc-stat.js';
import { trackChild } from './children.js';

export interface Gen { proc: ChildProcess; ask(c: WorkerCommand, timeoutMs: number): Promise<WorkerReply> }

export function forkGen(): Gen {
  // BENCH_GEN_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof-gen") goes to every load generator: profiling.
  const execArgv = (process.env.BENCH_GEN_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = trackChild(fork(join(projectRoot(), 'dist/load-tests/lib/conn-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv }));
  return {
    proc,
    ask(c, timeoutMs) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => { proc.off('message', on); reject(new Error(`load generator: no answer to ${c.cmd} in ${timeoutMs} ms`)); }, timeoutMs);
        const on = (r: WorkerReply): void => {
          clearTimeout(t);
          proc.off('message', on);
          if (r.type === 'error') reject(new Error(r.message)); else resolve(r);
        };
        proc.on('message', on);
        proc.send(c);
      });
    },
  };
}

export interface OpenedTotals { ok: number; failed: number; firstError?: string }

/** Sums the `opened` replies of several load generators (other replies count as nothing opened). */
export function openedTotals(replies: readonly WorkerReply[]): OpenedTotals {
  const t: OpenedTotals = { ok: 0, failed: 0 };
  for (const r of replies) {
    if (r.type !== 'opened') continue;
    t.ok += r.ok;
    t.failed += r.failed;
    t.firstError ??= r.firstError;
  }
  return t;
}

/** CPU seconds used so far by the load generators still running. */
export function gensCpuSeconds(gens: readonly Gen[]): number {
  return gens.reduce((a, g) => a + (tryProcSample(g.proc.pid!)?.cpuSeconds ?? 0), 0);
}

/**
 * Ends load generators: each gets `graceMs` to exit by itself after its `close` reply (so a
 * CPU profile asked for with BENCH_GEN_NODE_ARGS is written), then SIGTERM.
 */
export async function stopGens(gens: readonly Gen[], graceMs = 3000): Promise<void> {
  await Promise.all(gens.map((g) => new Promise<void>((resolve) => {
    if (g.proc.exitCode !== null || g.proc.signalCode !== null) { resolve(); return; }
    const t = setTimeout(() => { g.proc.kill(); resolve(); }, graceMs);
    g.proc.once('exit', () => { clearTimeout(t); resolve(); });
  })));
}
