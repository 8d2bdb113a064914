import { Redis } from 'ioredis';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { createKeys, type Keys } from '../../src/store/redis/keys.js';

/** A gateway child process with its own key prefix and database, plus a Redis client on the same keys. */
export interface IngestEnv {
  gw: Child & { url: string; port: number };
  redis: Redis;
  keys: Keys;
  prefix: string;
  stop(): Promise<void>;
}

export async function startIngestEnv(extra: Record<string, string> = {}): Promise<IngestEnv> {
  const { redisUrl } = testServices();
  const db = await createTestDatabase();
  const prefix = randomKeyPrefix();
  const gw = await startGateway({ REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, ...extra });
  const redis = new Redis(redisUrl);
  return {
    gw, redis, keys: createKeys(prefix), prefix,
    async stop() {
      await gw.stop();
      const ks = await redis.keys(`${prefix}*`);
      for (let i = 0; i < ks.length; i += 500) await redis.del(...ks.slice(i, i + 500));
      await redis.quit();
      await db.drop();
    },
  };
}

export { waitFor } from '../helpers/wait.js';

/** Small seeded PRNG (mulberry32): reproducible random tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
