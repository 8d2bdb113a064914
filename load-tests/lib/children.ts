/**
 * The harness's child processes (gateways, workers, load generators), so an interrupted run
 * (Ctrl-C, SIGTERM) stops them too instead of leaving them serving on loopback.
 */
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();

/** Remembers a child until it exits. */
export function trackChild(proc: ChildProcess): ChildProcess {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}

/**
 * On SIGINT or SIGTERM: SIGTERM to every live child, SIGKILL to those still running after
 * `graceMs`, then exit with 128 + the signal's number. `say` reports what it does.
 */
export function stopChildrenOnSignal(say: (line: string) => void, graceMs = 5000): void {
  const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    const code = signal === 'SIGINT' ? 130 : 143;
    say(`${signal}: stopping ${live.size} child process(es)`);
    for (const p of live) p.kill('SIGTERM');
    const done = (): void => process.exit(code);
    if (live.size === 0) return done();
    const t = setTimeout(() => {
      for (const p of live) p.kill('SIGKILL');
      done();
    }, graceMs);
    t.unref();
    const check = setInterval(() => {
      if (live.size > 0) return;
      clearInterval(check);
      clearTimeout(t);
      done();
    }, 50);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
