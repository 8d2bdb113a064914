import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';

// The project's commands answer bad input with a message and an exit code, never a stack trace.
const run = (entry: string, args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [join(projectRoot(), entry), ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};
const STACK = /^\s+at /m;

const COMMANDS: [string, string][] = [
  ['dist/src/auth/mint-cli.js', 'npm run token'],
  ['dist/src/sim/cli.js', 'geoflux simulator'],
  ['dist/src/ingest/bench-writer-cli.js', 'bench-writer-cli'],
  ['dist/load-tests/client-cost.js', 'client-cost'],
  ['dist/load-tests/map-client-cost.js', 'map-client-cost'],
  ['dist/load-tests/run.js', 'npm run bench'],
];

for (const [entry, title] of COMMANDS) {
  test(`${entry}: --help prints the usage (exit 0), an unknown option says so with the usage (exit 2)`, () => {
    const help = run(entry, ['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.ok(help.stdout.includes(title), help.stdout);
    const bad = run(entry, ['--no-such-option']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /Unknown option '--no-such-option'/);
    assert.ok(bad.stderr.includes(title), 'the usage follows the error');
    assert.doesNotMatch(bad.stderr, STACK);
  });
}

test('npm run token: a bad --ttl, --scope or --key is refused with exit 2 and a message', () => {
  for (const args of [['--ttl', 'soon'], ['--scope', 'everything'], ['--key', '/no/such/key.pem']]) {
    const r = run('dist/src/auth/mint-cli.js', args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.trim().length > 0);
    assert.doesNotMatch(r.stderr, STACK);
    assert.equal(r.stdout, '', 'no token printed');
  }
});

test('migrations: an unreachable database is one line naming it (exit 1), without the password', () => {
  const r = run('dist/src/store/pg/migrate-cli.js', [], { DATABASE_URL: 'postgres://u:hunter2@127.0.0.1:1/nowhere', LOG_PRETTY: 'false' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nowhere/);
  assert.doesNotMatch(r.stderr, /hunter2/);
  assert.doesNotMatch(r.stderr, STACK);
});

test('worker bench-flush: --help (exit 0), a bad mode or count (exit 2), unreachable services in one line (exit 1)', () => {
  const entry = 'dist/workers/bench-flush.js';
  const help = run(entry, ['--help']);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /bench-flush\.js \[window\|raw\]/);
  for (const args of [['fast'], ['raw', 'many'], ['window', '1000', '-3']]) {
    const r = run(entry, args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /window or raw|positive whole number/);
    assert.doesNotMatch(r.stderr, STACK);
  }
  const pg = run(entry, ['window', '10'], { DATABASE_URL: 'postgres://u:hunter2@127.0.0.1:1/nowhere', LOG_PRETTY: 'false' });
  assert.equal(pg.status, 1);
  assert.match(pg.stderr, /cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nowhere/);
  assert.doesNotMatch(pg.stderr, /hunter2/);
  assert.doesNotMatch(pg.stderr, STACK);
});
