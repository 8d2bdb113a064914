import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, ConfigError } from '../../src/config/load.js';

test('defaults load and are frozen', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.http.port, 8080);
  // Loopback: with the committed development secret and /v1/demo-token, anyone who reaches the port could mint tokens.
  assert.equal(c.http.host, '127.0.0.1');
  assert.equal(c.grid.ingestZoom, 13);
  assert.equal(c.worker.flushIntervalMs, 10000);
  assert.ok(c.instanceId.length > 0);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.http));
});

test('environment variables override defaults, with coercion', () => {
  const c = loadConfig({ env: { PORT: '9001', REDIS_URL: 'redis://example:1', GRID_ZOOM: '12', LOG_LEVEL: 'debug', UWS_ALLOW_FALLBACK: 'true', FLUSH_INTERVAL_MS: '2500', ENTITY_TTL_SECONDS: '30', REDIS_CLUSTER_SAFE_SCRIPTS: 'true', REDIS_ENTITY_STATE_IN_AOF: 'true' } });
  assert.equal(c.http.port, 9001);
  assert.equal(c.redis.url, 'redis://example:1');
  assert.equal(c.grid.ingestZoom, 12);
  assert.equal(c.log.level, 'debug');
  assert.equal(c.http.allowUwsFallback, true);
  assert.equal(c.worker.flushIntervalMs, 2500);
  assert.equal(c.liveness.entityTtlSeconds, 30);
  assert.equal(c.redis.clusterSafeScripts, true);
  assert.equal(c.redis.entityStateInAof, true);
  assert.equal(loadConfig({ env: {} }).redis.clusterSafeScripts, false);
  assert.equal(loadConfig({ env: {} }).redis.entityStateInAof, false);
});

test('every invalid value is reported with its key and variable', () => {
  try {
    loadConfig({ env: { PORT: 'eighty', REDIS_URL: 'http://nope', GRID_ZOOM: '40', LOG_LEVEL: 'loud', JWT_SECRET: 'short' } });
    assert.fail('expected ConfigError');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const text = err.message;
    for (const needle of ['http.port (PORT)', 'redis.url (REDIS_URL)', 'grid.ingestZoom (GRID_ZOOM)', 'log.level (LOG_LEVEL)', 'auth.jwtSecret (JWT_SECRET)']) {
      assert.ok(text.includes(needle), `${needle} in:\n${text}`);
    }
    assert.equal(err.problems.length, 5);
  }
});

test('production refuses the development secret and the uWS fallback', () => {
  assert.throws(() => loadConfig({ env: { NODE_ENV: 'production' } }), /development secret/);
  assert.throws(() => loadConfig({ env: { NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), UWS_ALLOW_FALLBACK: '1' } }), /allowUwsFallback/);
  assert.equal(loadConfig({ env: { NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40) } }).env, 'production');
});

test('rooms zoom range is checked', () => {
  assert.throws(() => loadConfig({ env: { ROOMS_MIN_ZOOM: '15', ROOMS_MAX_ZOOM: '10' } }), /rooms.minZoom/);
});
