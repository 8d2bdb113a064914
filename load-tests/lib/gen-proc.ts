/** Forked load-generator processes (lib/conn-worker.ts), asked over IPC. */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import type { WorkerCommand, WorkerReply } from './conn-worker.js';

export interface Gen { proc: ChildProcess; ask(c: WorkerCommand, timeoutMs: number): Promise<WorkerReply> }

export function forkGen(): Gen {
  const proc = fork(join(projectRoot(), 'dist/load-tests/lib/conn-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
