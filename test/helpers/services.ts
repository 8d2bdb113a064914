import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { projectRoot } from '../../src/config/load.js';

/**
 * The real Redis and PostgreSQL the suite talks to. scripts/test.sh starts a private stack
 * and exports TEST_REDIS_URL / TEST_DATABASE_URL; a test file run on its own starts the
 * same stack itself.
 */
let cached: { redisUrl: string; databaseUrl: string } | undefined;

export function testServices(): { redisUrl: string; databaseUrl: string } {
  if (cached) return cached;
  let redisUrl = process.env.TEST_REDIS_URL;
  let databaseUrl = process.env.TEST_DATABASE_URL;
  if (!redisUrl || !databaseUrl) {
    const root = projectRoot();
    const out = execFileSync('bash', [join(root, 'scripts/stack.sh'), 'up'], {
      env: {
        ...process.env,
        STACK_DIR: join(root, '.data/test-stack'), STACK_REDIS_PORT: '6391', STACK_PG_PORT: '5441', STACK_DB: 'geoflux_test',
        STACK_SKIP_MIGRATE: '1', REDIS_URL: '', DATABASE_URL: '',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    }).toString();
    redisUrl = /REDIS_URL=(\S+)/.exec(out)?.[1];
    databaseUrl = /DATABASE_URL=(\S+)/.exec(out)?.[1];
    if (!redisUrl || !databaseUrl) throw new Error(`stack.sh up printed no URLs:\n${out}`);
  }
  cached = { redisUrl, databaseUrl };
  return cached;
}

export function randomSuffix(): string {
  return randomBytes(4).toString('hex');
}

/** A random Redis key prefix, so tests never flush or see each other's keys. */
export function randomKeyPrefix(): string {
  return `t${randomSuffix()}:`;
}

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/** A fresh database per test file; drop() removes it. Migrations run when a process starts. */
export async function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const { databaseUrl } = testServices();
  const name = `gf_test_${randomSuffix()}`;
  const admin = new pg.Client({ connectionString: withDb(databaseUrl, 'postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    url: withDb(databaseUrl, name),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: withDb(databaseUrl, 'postgres') });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
