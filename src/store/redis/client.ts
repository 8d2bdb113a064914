import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../log/logger.js';

export type { Redis };

/**
 * Creates an ioredis client and waits until it is ready. Whoever creates a client
 * closes it (`quit()`); modules receive clients, never create their own.
 */
export async function connectRedis(url: string, log: Logger, name: string, extra: RedisOptions = {}): Promise<Redis> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectionName: name,
    maxRetriesPerRequest: 3,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    ...extra,
  });
  let lastError = '';
  client.on('error', (err: Error) => {
    if (err.message !== lastError) log.warn({ err, client: name }, 'redis error');
    lastError = err.message;
  });
  client.on('ready', () => { lastError = ''; });
  await client.connect();
  return client;
}

export async function quitRedis(client: Redis): Promise<void> {
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
