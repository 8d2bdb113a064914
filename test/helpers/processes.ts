import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../../src/config/load.js';

export interface Child {
  proc: ChildProcess;
  /** JSON log lines seen so far. */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line matching the predicate. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a built entry point (dist/…) as a child process with JSON logs on stdout. */
export function startNode(entry: string, env: Record<string, string>): Child {
  const proc = spawn(process.execPath, [join(projectRoot(), entry)], {
    env: { ...process.env, LOG_PRETTY: 'false', LOG_LEVEL: 'info', NODE_ENV: 'test', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let obj: Record<string, unknown>;
    try { obj = JSON.parse(line) as Record<string, unknown>; } catch { obj = { msg: line }; }
    logs.push(obj);
    for (const w of [...waiters]) if (w.pred(obj)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(obj); }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    logs,
    waitForLog(pred, timeoutMs = 20000) {
      const seen = logs.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${entry}: log line not seen in ${timeoutMs} ms; stderr:\n${stderr}\nlogs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)), timeoutMs);
        const w = { pred, resolve: (l: Record<string, unknown>) => { clearTimeout(timer); resolve(l); } };
        waiters.push(w);
        void exited.then((code) => { clearTimeout(timer); reject(new Error(`${entry} exited with ${code}; stderr:\n${stderr}`)); });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill(signal);
      return exited;
    },
  };
}

/** Starts a gateway on a free port and waits until it listens; resolves with its base URL. */
export async function startGateway(env: Record<string, string>): Promise<Child & { url: string; port: number }> {
  const child = startNode('dist/src/main.js', { PORT: '0', HOST: '127.0.0.1', ...env });
  const line = await child.waitForLog((l) => l.msg === 'gateway listening');
  const port = Number(line.port);
  return Object.assign(child, { port, url: `http://127.0.0.1:${port}` });
}

export async function startWorker(env: Record<string, string>): Promise<Child> {
  const child = startNode('dist/workers/main.js', env);
  await child.waitForLog((l) => l.msg === 'worker running');
  return child;
}
