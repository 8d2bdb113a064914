/**
 * --realtime: the system under test (gateways, the local Redis) and the process of the measuring
 * MapClients run at real-time priority (SCHED_RR 1, set with util-linux `chrt` on every thread),
 * so the bulk load generators on the same machine (the ping sender, the sink audience) only get
 * the CPU time those leave: what load generators on other machines would be. The kernel still
 * keeps 5 % of each second for everything else (sched_rt_runtime_us), and the policy goes back to
 * normal (SCHED_OTHER) when the scenario ends, for processes that outlive it (the stack's Redis).
 */
import { execFileSync } from 'node:child_process';

export interface RealtimeProcess { label: string; pid: number }

/** Throws, saying why, when this machine will not give real-time priority (no chrt, no CAP_SYS_NICE). */
export function checkRealtimeAllowed(): void {
  try {
    execFileSync('chrt', ['--rr', '1', 'true'], { stdio: 'pipe' });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = e.code === 'ENOENT' ? 'chrt (util-linux) is not installed' : (e.stderr?.toString().trim() || e.message);
    throw new Error(`--realtime: cannot run at real-time priority here (${why}); it needs root or CAP_SYS_NICE`);
  }
}

/** Sets SCHED_RR 1 on every thread of each process; returns what undoes it. */
export function raiseToRealtime(procs: readonly RealtimeProcess[]): () => void {
  const done: RealtimeProcess[] = [];
  try {
    for (const p of procs) {
      execFileSync('chrt', ['--all-tasks', '--rr', '--pid', '1', String(p.pid)], { stdio: 'pipe' });
      done.push(p);
    }
  } catch (err) {
    restore(done);
    throw new Error(`--realtime: chrt failed: ${(err as Error).message}`);
  }
  return () => restore(done);
}

/**
 * Puts a process that outlives a run (the stack's Redis) back to normal priority if an earlier
 * `--realtime` run was interrupted before it could: true if it had to.
 */
export function lowerIfLeftRaised(p: RealtimeProcess): boolean {
  let policy: string;
  try { policy = schedulingPolicy(p.pid); } catch { return false; } // no chrt: nothing can have raised it
  if (policy === 'SCHED_OTHER') return false;
  restore([p]);
  return true;
}

function restore(procs: readonly RealtimeProcess[]): void {
  for (const p of procs) {
    // The process may have exited (gateways and generators stop first): nothing to undo then.
    try { execFileSync('chrt', ['--all-tasks', '--other', '--pid', '0', String(p.pid)], { stdio: 'pipe' }); } catch { /* gone */ }
  }
}

/** The scheduling policy of a process's main thread, as chrt names it (SCHED_OTHER, SCHED_RR, …). */
export function schedulingPolicy(pid: number): string {
  const out = execFileSync('chrt', ['--pid', String(pid)], { encoding: 'utf8' });
  return /policy:\s*(\S+)/.exec(out)?.[1] ?? 'unknown';
}
