import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import pg from 'pg';
import { testServices } from '../helpers/services.js';
import { freePort } from '../helpers/ports.js';

// The shell scripts around the local stack (scripts/stack.sh, start.sh, test.sh).
const root = projectRoot();

/** Runs `bash script` to its end (or kills it after `timeoutMs`); its exit code and output. */
function run(script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    // SIGTERM: start.sh stops what it started on it.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

/**
 * This process's environment as a user's shell would have it: without the suite's URLs, its
 * runner's context, and with stack ports of its own (a `stack.sh down` on the suite's ports
 * would stop the suite's Redis).
 */
async function baseEnv(extra: NodeJS.ProcessEnv): Promise<NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = { ...process.env, STACK_REDIS_PORT: String(await freePort()), STACK_PG_PORT: String(await freePort()), ...extra };
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'TEST_REDIS_URL', 'TEST_DATABASE_URL', 'TEST_FILES', 'KEEP_STACK', 'STACK_DB', 'NODE_TEST_CONTEXT']) {
    if (!(k in extra)) delete env[k];
  }
  return env;
}

// A data folder below a regular file: stack.sh's first mkdir fails (as any failure of it would).
const brokenStackDir = join(root, 'package.json', 'stack');

test('start.sh stops when stack.sh up fails, instead of going on with the default URLs', { timeout: 240_000 }, async () => {
  const port = await freePort();
  const { code, out } = await run('scripts/start.sh', await baseEnv({ STACK_DIR: brokenStackDir, PORT: String(port), SIM_VEHICLES: '1' }), 180_000);
  assert.notEqual(code, 0, out);
  assert.match(out, /\[start\] the local stack did not come up/, out.slice(-3000));
  assert.doesNotMatch(out, /gateway did not become ready|geoflux is running/, 'no gateway was started');
  await assert.rejects(fetch(`http://127.0.0.1:${port}/readyz`), 'nothing listens');
});

test('test.sh stops when stack.sh up fails, instead of running the tests', { timeout: 240_000 }, async () => {
  // An external Redis that does not answer: stack.sh up fails (and a test.sh going on anyway
  // would still find URLs to run with, the given ones).
  const { databaseUrl } = testServices();
  const deadRedis = `redis://127.0.0.1:${await freePort()}`;
  const dir = mkdtempSync(join(tmpdir(), 'geoflux-testsh-'));
  const marker = join(dir, 'ran');
  const probe = join(dir, 'probe.test.mjs');
  writeFileSync(probe, `import { test } from 'node:test'; import { writeFileSync } from 'node:fs';\ntest('probe', () => writeFileSync(${JSON.stringify(marker)}, 'x'));\n`);
  try {
    const { code, out } = await run('scripts/test.sh', await baseEnv({
      STACK_DIR: join(dir, 'stack'), REDIS_URL: deadRedis, DATABASE_URL: databaseUrl, TEST_FILES: probe, SKIP_CHROMIUM_INSTALL: '1',
    }), 180_000);
    assert.notEqual(code, 0, out);
    assert.match(out, /does not answer[\s\S]*\[test\] the local stack did not come up/, out.slice(-3000));
    assert.ok(!existsSync(marker), 'the tests did not run');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// pg_ctl hands its -o options to /bin/sh: a data folder with a space in its path split them, and
// a deep one made the Unix socket path longer than the 107 bytes allowed. Nothing connects
// through the socket (everything uses 127.0.0.1), so the stack runs without one.
test('stack.sh: a data folder with a space in a long path', { timeout: 240_000 }, async () => {
  const base = mkdtempSync(join(tmpdir(), 'geoflux stack '));
  // Reachable by the postgres user (as root, the cluster runs as postgres in this folder).
  chmodSync(base, 0o755);
  const dir = join(base, 'a folder whose name alone is long enough to push the socket path past its limit');
  mkdirSync(dir);
  const env = await baseEnv({ STACK_DIR: dir, STACK_SKIP_MIGRATE: '1' });
  try {
    const out = execFileSync('bash', ['scripts/stack.sh', 'up'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 }).toString();
    const databaseUrl = /DATABASE_URL=(\S+)/.exec(out)?.[1];
    assert.ok(databaseUrl, out);
    assert.equal(databaseUrl, `postgres://postgres@127.0.0.1:${env.STACK_PG_PORT}/geoflux`);
    const c = new pg.Client({ connectionString: databaseUrl });
    await c.connect();
    try {
      assert.equal((await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
      assert.equal((await c.query<{ dirs: string }>("SELECT current_setting('unix_socket_directories') AS dirs")).rows[0]!.dirs, '');
    } finally {
      await c.end();
    }
    assert.equal(execFileSync('redis-cli', ['-p', env.STACK_REDIS_PORT!, 'ping']).toString().trim(), 'PONG');
    // Another stack (another data folder) on the same ports neither reuses nor stops this one.
    const other = { ...env, STACK_DIR: join(base, 'other') };
    let refused = '';
    try {
      execFileSync('bash', ['scripts/stack.sh', 'up'], { cwd: root, env: other, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    } catch (err) {
      refused = String((err as { stderr?: Buffer }).stderr ?? err);
    }
    assert.match(refused, /answers as another (Redis|PostgreSQL)/, refused || 'stack.sh up succeeded on ports another stack holds');
    execFileSync('bash', ['scripts/stack.sh', 'down'], { cwd: root, env: other, stdio: 'ignore', timeout: 120_000 });
    assert.equal(execFileSync('redis-cli', ['-p', env.STACK_REDIS_PORT!, 'ping']).toString().trim(), 'PONG', 'the first stack\'s Redis still runs');
    const c2 = new pg.Client({ connectionString: databaseUrl });
    await c2.connect();
    await c2.end();
  } finally {
    try {
      execFileSync('bash', ['scripts/stack.sh', 'down'], { cwd: root, env, stdio: 'ignore', timeout: 120_000 });
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }
});
