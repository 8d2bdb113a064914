import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, startWorker } from '../helpers/processes.js';

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
