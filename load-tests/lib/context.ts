/** What every scenario gets from the runner: the options, the bench stack and the ceilings. */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { BenchOptions } from './args.js';
import type { BenchStack } from './stack.js';
import type { Ceilings } from './report.js';

export interface ScenarioContext {
  opts: BenchOptions;
  /** The private bench stack, started on first use. */
  readonly stack: BenchStack;
  ceilings: Ceilings;
}

/** A fresh key prefix per scenario, so scenarios never see each other's keys. */
export function scenarioPrefix(name: string): string {
  return `bench:${name}:${randomBytes(3).toString('hex')}:`;
}

export async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await r.connect();
  try { return await fn(r); } finally { r.disconnect(); }
}

/** Redis server CPU seconds (user + sys) from INFO cpu. */
export async function redisCpuSeconds(url: string): Promise<number> {
  return withRedis(url, async (r) => {
    const info = await r.info('cpu');
    const get = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
    return get('used_cpu_user') + get('used_cpu_sys');
  });
}

/** The Redis server's process id (INFO server), for a local one. */
export async function redisPid(url: string): Promise<number> {
  return withRedis(url, async (r) => Number(/^process_id:(\d+)/m.exec(await r.info('server'))?.[1]));
}

/** Drops the keys of earlier scenarios (the bench Redis is private to the harness). */
export async function cleanRedis(url: string): Promise<void> {
  await withRedis(url, async (r) => { await r.flushall(); });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
