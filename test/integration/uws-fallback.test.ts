import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startNode, startGateway, type Child } from '../helpers/processes.js';

/**
 * The uWS package falls back silently to a slow pure-JS server when its binary does not load
 * (forced here with the package's own UWS_USE_FALLBACK switch). The gateway must refuse to start,
 * saying why, unless UWS_ALLOW_FALLBACK=true (then it warns loudly); and it logs the native build it runs.
 */
test('the gateway refuses the pure-JS fallback, starts on it only when allowed (loudly), and names its build', async () => {
  const { redisUrl } = testServices();
  const db = await createTestDatabase();
  const children: Child[] = [];
  const env = { REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), PORT: '0', HOST: '127.0.0.1' };
  try {
    const refused = startNode('dist/src/main.js', { ...env, UWS_USE_FALLBACK: '1' });
    children.push(refused);
    const fatal = await refused.waitForLog((l) => l.code === 'UWS_NOT_NATIVE');
    assert.match(String(fatal.msg), /fell back to a slow pure-JS implementation/);
    for (let i = 0; i < 200 && refused.proc.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(refused.proc.exitCode, 1, 'exits with 1');

    const allowed = await startGateway({ ...env, UWS_USE_FALLBACK: '1', UWS_ALLOW_FALLBACK: 'true' });
    children.push(allowed);
    assert.ok(allowed.logs.some((l) => /SLOW PURE-JS/.test(String(l.msg))), 'warns loudly');
    assert.equal(allowed.logs.find((l) => l.msg === 'gateway listening')?.uws, 'fallback');
    // (The package's pure-JS fallback cannot serve this gateway's HTTP routes: allowing it is
    // for diagnostics only, as the README says. Not exercised further.)
    await allowed.stop('SIGKILL');

    const native = await startGateway(env);
    children.push(native);
    assert.match(String(native.logs.find((l) => l.msg === 'gateway listening')?.uws), /uws_linux_.*\.node$/);
    assert.equal(await native.stop(), 0);
  } finally {
    await Promise.all(children.map((c) => c.stop('SIGKILL')));
    await db.drop();
  }
});
