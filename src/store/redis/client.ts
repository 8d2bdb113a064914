import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../log/logger.js';
import { DependencyError, describeUrl } from '../../errors/dependency-error.js';

export type { Redis };

/**
 * Creates an ioredis client and waits until it is ready (or throws a DependencyError naming
 * Redis and where). Whoever creates a client closes it (`quit()`); modules receive clients,
 * never create their own.
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
  /** The last error since the client was last ready: logged once per distinct message. */
  let lastErr: Error | undefined;
  client.on('error', (err: Error) => {
    if (err.message !== lastErr?.message) log.warn({ err, client: name }, 'redis error');
    lastErr = err;
  });
  client.on('ready', () => { lastErr = undefined; });
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    // connect() rejects with "Connection is closed."; the socket's own error says why.
    throw new DependencyError('Redis', describeUrl(url), lastErr ?? err);
  }
  return client;
}

export async function quitRedis(client: Redis): Promise<void> {
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
