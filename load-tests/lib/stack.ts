/**
 * The bench's own Redis + PostGIS (scripts/stack.sh with a private STACK_DIR and ports), so
 * the test and dev stacks are never touched, and the gateway/worker child processes.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createWriteStream } from 'node:fs';
import { projectRoot } from '../../src/config/load.js';
import { trackChild } from './children.js';

/** Ports of the bench stack; BENCH_REDIS_PORT / BENCH_PG_PORT move it (e.g. a second checkout benchmarking beside this one). */
export const BENCH_REDIS_PORT = Number(process.env.BENCH_REDIS_PORT) || 6392;
export const BENCH_PG_PORT = Number(process.env.BENCH_PG_PORT) || 5442;
export const BENCH_JWT_SECRET = 'bench-only-secret-0123456789abcdef';
export const BENCH_ISSUER = 'geoflux';

export interface BenchStack { redisUrl: string; databaseUrl: string; redisPort: number; pgPort: number }

export function benchStackUp(): BenchStack {
  const root = projectRoot();
  const out = execFileSync('bash', [join(root, 'scripts/stack.sh'), 'up'], {
    env: {
      ...process.env,
      STACK_DIR: join(root, '.data/bench-stack'), STACK_REDIS_PORT: String(BENCH_REDIS_PORT), STACK_PG_PORT: String(BENCH_PG_PORT),
      STACK_DB: 'geoflux_bench', REDIS_URL: '', DATABASE_URL: '',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  }).toString();
  const redisUrl = /REDIS_URL=(\S+)/.exec(out)?.[1];
  const databaseUrl = /DATABASE_URL=(\S+)/.exec(out)?.[1];
  if (!redisUrl || !databaseUrl) throw new Error(`stack.sh up printed no URLs:\n${out}`);
  return { redisUrl, databaseUrl, redisPort: BENCH_REDIS_PORT, pgPort: BENCH_PG_PORT };
}

export interface NodeChild {
  proc: ChildProcess;
  pid: number;
  name: string;
  logs: Record<string, unknown>[];
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<number | null>;
}

const MAX_KEPT_LOGS = 2000;

/** Starts a built entry (dist/…) with JSON logs; keeps the last lines for diagnostics. */
export function startNodeChild(name: string, entry: string, env: Record<string, string>, args: string[] = []): NodeChild {
  // BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") goes to every gateway/worker child: profiling.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = trackChild(spawn(process.execPath, [...nodeArgs, join(projectRoot(), entry), ...args], {
    env: { ...process.env, LOG_PRETTY: 'false', LOG_LEVEL: 'info', NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-8000); });
  // BENCH_CHILD_LOG_DIR keeps each child's whole output (e.g. with --trace-gc) in <dir>/<name>.log.
  const keep = process.env.BENCH_CHILD_LOG_DIR ? createWriteStream(join(process.env.BENCH_CHILD_LOG_DIR, `${name}.log`), { flags: 'a' }) : undefined;
  if (keep) {
    proc.stderr!.pipe(keep, { end: false });
    proc.once('close', () => keep.end()); // 'close': both output streams are done
  }
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    keep?.write(`${line}\n`);
    let obj: Record<string, unknown>;
    try { obj = JSON.parse(line) as Record<string, unknown>; } catch { obj = { msg: line }; }
    logs.push(obj);
    if (logs.length > MAX_KEPT_LOGS) logs.splice(0, logs.length - MAX_KEPT_LOGS);
    for (const w of [...waiters]) if (w.pred(obj)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(obj); }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    pid: proc.pid!,
    name,
    logs,
    waitForLog(pred, timeoutMs = 30_000) {
      const seen = logs.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: log line not seen in ${timeoutMs} ms; stderr:\n${stderr}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => { clearTimeout(timer); resolve(l); } });
        void exited.then((code) => { clearTimeout(timer); reject(new Error(`${name} exited with ${code}; stderr:\n${stderr}`)); });
      });
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

export interface BenchEnv { stack: BenchStack; keyPrefix: string; extra?: Record<string, string> }

function serviceEnv(e: BenchEnv): Record<string, string> {
  return {
    REDIS_URL: e.stack.redisUrl, DATABASE_URL: e.stack.databaseUrl, REDIS_KEY_PREFIX: e.keyPrefix,
    JWT_SECRET: BENCH_JWT_SECRET, JWT_ISSUER: BENCH_ISSUER, ...e.extra,
  };
}

export type GatewayChild = NodeChild & { port: number; url: string };

export async function startBenchGateway(e: BenchEnv, name = 'gateway'): Promise<GatewayChild> {
  const child = startNodeChild(name, 'dist/src/main.js', { PORT: '0', HOST: '127.0.0.1', ...serviceEnv(e) });
  const line = await child.waitForLog((l) => l.msg === 'gateway listening');
  const port = Number(line.port);
  return Object.assign(child, { port, url: `http://127.0.0.1:${port}` });
}

export async function startBenchWorker(e: BenchEnv, name = 'worker'): Promise<NodeChild> {
  const child = startNodeChild(name, 'dist/workers/main.js', { HOST: '127.0.0.1', ...serviceEnv(e) });
  await child.waitForLog((l) => l.msg === 'worker running');
  return child;
}

/** A free TCP port on 127.0.0.1 (for listeners that cannot take port 0, e.g. the worker's /metrics). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Raises this process's open-files limit (children inherit it); returns the limit in force. */
export function raiseFdLimit(want: number): number {
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    try { execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}`], { stdio: 'ignore' }); } catch { /* not allowed */ }
  }
  try {
    const out = execFileSync('prlimit', ['--pid', String(process.pid), '--nofile', '--output', 'SOFT', '--noheadings'], { encoding: 'utf8' });
    const soft = Number(out.trim());
    return Number.isFinite(soft) ? soft : 0;
  } catch {
    return 0;
  }
}
