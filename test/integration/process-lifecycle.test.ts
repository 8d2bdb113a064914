import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, startWorker, startNode } from '../helpers/processes.js';

// A closed terminal sends SIGHUP: the gateway and the worker stop as gracefully as on SIGTERM.
test('SIGHUP stops the gateway and the worker gracefully (exit 0)', async () => {
  const { redisUrl } = testServices();
  const db = await createTestDatabase();
  try {
    const env = { REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix() };
    const procs = [await startGateway(env), await startWorker(env)];
    for (const p of procs) {
      assert.equal(await p.stop('SIGHUP'), 0);
      assert.ok(p.logs.some((l) => l.msg === 'shutting down' && l.reason === 'SIGHUP'), 'logs its reason');
      assert.ok(p.logs.some((l) => l.msg === 'stopped'), 'logs its graceful stop');
    }
  } finally {
    await db.drop();
  }
});

// An unreachable backing service at start: exit 1 with one fatal line naming it and where.
test('an unreachable Redis or PostgreSQL at start: exit 1, the fatal log names it and where, never the password', async () => {
  const { redisUrl } = testServices();
  const cases: { entry: string; env: Record<string, string>; says: string }[] = [
    { entry: 'dist/src/main.js', env: { REDIS_URL: 'redis://:hunter2@127.0.0.1:1', PORT: '0' }, says: 'cannot connect to Redis at 127.0.0.1:1' },
    { entry: 'dist/workers/main.js', env: { REDIS_URL: redisUrl, DATABASE_URL: 'postgres://u:hunter2@127.0.0.1:1/nowhere' }, says: 'cannot connect to PostgreSQL at 127.0.0.1:1/nowhere' },
  ];
  for (const c of cases) {
    const p = startNode(c.entry, c.env);
    const code = await new Promise<number | null>((resolve) => p.proc.once('close', (n) => resolve(n)));
    assert.equal(code, 1, `${c.entry} exits 1`);
    const fatal = p.logs.find((l) => l.level === 60);
    assert.ok(fatal, `${c.entry}: a fatal log line`);
    assert.ok(String((fatal.err as { message?: string } | undefined)?.message).startsWith(c.says), JSON.stringify(fatal));
    assert.ok(!p.logs.some((l) => JSON.stringify(l).includes('hunter2')), 'no password in the logs');
  }
});
