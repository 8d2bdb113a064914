import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { projectRoot } from '../../src/config/load.js';
import { ENV_VARS } from '../../src/config/env.js';

// No Docker engine runs here: check the structure users will rely on.
const root = projectRoot();
const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, { image?: string; build?: unknown; command?: string[]; restart?: string; environment?: Record<string, string>; healthcheck?: { test: unknown }; depends_on?: Record<string, { condition: string }> }>;
};

test('docker-compose has redis, postgis, gateway and worker with health checks', () => {
  const s = compose.services;
  assert.deepEqual(Object.keys(s).sort(), ['gateway', 'postgis', 'redis', 'worker']);
  for (const name of ['redis', 'postgis', 'gateway']) assert.ok(s[name]!.healthcheck?.test, `${name} has a healthcheck`);
  assert.ok(s.redis!.command!.join(' ').includes('--appendonly yes'), 'redis runs with AOF');
  assert.ok(s.redis!.command!.join(' ').includes('--auto-aof-rewrite-min-size 1gb'), 'AOF rewrites are not forked every few seconds');
});

test('gateway and worker run the built entry points and wait for healthy services', () => {
  const s = compose.services;
  assert.deepEqual(s.gateway!.command, ['node', 'dist/src/main.js']);
  assert.deepEqual(s.worker!.command, ['node', 'dist/workers/main.js']);
  for (const name of ['gateway', 'worker']) {
    assert.equal(s[name]!.depends_on?.redis?.condition, 'service_healthy');
    assert.equal(s[name]!.depends_on?.postgis?.condition, 'service_healthy');
    // They exit 1 when a service cannot be reached at start; the runtime starts them again.
    assert.equal(s[name]!.restart, 'unless-stopped');
    const env = s[name]!.environment!;
    for (const key of Object.keys(env)) assert.ok(key in ENV_VARS, `${name}: ${key} is a known config variable`);
    assert.match(env.REDIS_URL!, /^redis:\/\/redis:/);
    assert.match(env.DATABASE_URL!, /@postgis:5432\//);
    // The config's default listen address is 127.0.0.1, unreachable from other containers.
    assert.equal(env.HOST, '0.0.0.0', `${name} listens on every interface of its container`);
    assert.equal(env.NODE_ENV, 'production', `${name}: no development secret or demo-token endpoint`);
  }
});

test('the images it builds exist', () => {
  assert.ok(existsSync(join(root, 'Dockerfile')));
  assert.ok(existsSync(join(root, 'docker/postgis.Dockerfile')));
  assert.match(readFileSync(join(root, 'docker/postgis.Dockerfile'), 'utf8'), /partman/);
  assert.match(readFileSync(join(root, 'Dockerfile'), 'utf8'), /^ENV HOST=0\.0\.0\.0$/m, 'the image listens on every interface');
});
