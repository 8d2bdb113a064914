import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import { createTestDatabase, randomKeyPrefix, testServices } from '../helpers/services.js';
import { freePort } from '../helpers/ports.js';
import { sleep, waitFor } from '../helpers/wait.js';

// The README's first command as process managers and terminals treat it. Here it runs against
// the suite's Redis and a fresh database, which it takes for external services and leaves alone.

/** Every descendant of `pid` (children, grandchildren, …) from `ps`. */
function descendants(pid: number): number[] {
  const rows = execFileSync('ps', ['-eo', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number) as [number, number]);
  const out: number[] = [];
  const walk = (p: number): void => { for (const [c, pp] of rows) if (pp === p) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

interface Started { child: ChildProcess; port: number; output(): string; exited: Promise<unknown>; started: number[] }

/** Runs `cmd` (npm start or start.sh) until its banner, then hands it to `stop` and checks nothing it started is left. */
async function startThenStop(cmd: string, args: string[], stop: (s: Started) => void | Promise<void>, o: { detached?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const { redisUrl } = testServices();
  const db = await createTestDatabase();
  const port = await freePort();
  const child = spawn(cmd, args, {
    cwd: projectRoot(),
    env: { ...process.env, PORT: String(port), REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), SIM_VEHICLES: '5', WORKER_METRICS_PORT: '0', ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: o.detached ?? false,
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let started: number[] = [];
  try {
    await waitFor(() => {
      assert.equal(child.exitCode, null, `${cmd} exited early:\n${out.slice(-3000)}`);
      return out.includes('geoflux is running') || undefined;
    }, 180_000, () => `${cmd} to come up:\n${out.slice(-3000)}`, 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
    started = descendants(child.pid!);
    assert.ok(started.length >= 3, `gateway, worker and simulator run (found ${started.length} processes)`);

    await stop({ child, port, output: () => out, exited, started });
    const r = await Promise.race([exited.then(() => 'exited'), sleep(30_000).then(() => 'timeout')]);
    assert.equal(r, 'exited', `${cmd} did not exit:\n${out.slice(-2000)}`);
    for (let i = 0; i < 50 && started.some(alive); i++) await sleep(200);
    assert.deepEqual(started.filter(alive), [], `processes left running:\n${out.slice(-2000)}`);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/readyz`), 'the gateway no longer listens');
    return out;
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    // Orphans (the failure these tests are about) no longer descend from the command: kill what it had started.
    for (const p of [...started, ...descendants(child.pid!)]) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    await db.drop();
  }
}

// systemd, `timeout` or a container runtime signal npm alone, not its process group.
test('npm start: SIGTERM to npm alone stops everything it started', { timeout: 240_000 }, async () => {
  const out = await startThenStop('npm', ['start'], ({ child }) => { child.kill('SIGTERM'); });
  assert.match(out, /\[start\] stopping/);
});

// A closed terminal: the output goes nowhere, then hangup. Stopping must not die on its first write.
test('start.sh: after its output is closed, a hangup still stops everything it started', { timeout: 240_000 }, async () => {
  await startThenStop('bash', ['scripts/start.sh'], async ({ child }) => {
    child.stdout!.destroy();
    child.stderr!.destroy();
    await sleep(300);
    child.kill('SIGHUP');
  });
});

// Ctrl-C in a terminal signals the whole foreground process group (npm and start.sh; npm also
// forwards it to start.sh). The children must get one signal (start.sh's SIGTERM), not the
// group's SIGINT and then that SIGTERM, nor a second one for the forwarded copy: a second
// signal makes a process exit at once and skip its graceful stop.
test('npm start: Ctrl-C (SIGINT to its process group) stops every child gracefully, once', { timeout: 240_000 }, async () => {
  const logOf = (name: string): string => readFileSync(join(projectRoot(), '.data', 'logs', `${name}.log`), 'utf8');
  await startThenStop('npm', ['start'], async ({ child }) => {
    // The simulator starts after the banner: let it install its signal handlers first.
    await waitFor(() => logOf('simulator').includes('simulator running') || undefined, 20_000, 'the simulator to run', 200);
    process.kill(-child.pid!, 'SIGINT');
  }, { detached: true });
  for (const name of ['gateway', 'worker', 'simulator']) {
    const log = logOf(name);
    assert.doesNotMatch(log, /second signal/, `${name} exited at once instead of stopping gracefully`);
    assert.match(log, /"msg":"stopped"/, `${name} logged its graceful stop`);
  }
});

// curl is not installed by the project's scripts (a minimal Debian lacks it): start.sh must not
// need it. A `curl` that always fails comes first on PATH here.
test('start.sh: comes up (and stops) without curl', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'geoflux-nocurl-'));
  try {
    writeFileSync(join(dir, 'curl'), '#!/bin/sh\necho "curl: not installed (test stub)" >&2\nexit 127\n');
    chmodSync(join(dir, 'curl'), 0o755);
    await startThenStop('bash', ['scripts/start.sh'], ({ child }) => { child.kill('SIGTERM'); }, { env: { PATH: `${dir}:${process.env.PATH ?? ''}` } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
