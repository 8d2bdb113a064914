import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { projectRoot } from '../../../config/load.js';

/**
 * Server-side scripts, one Lua file each, named with their key count (BullMQ style; `-n`: a
 * variable count, passed first). They are
 * read from src/ at run time (tsc does not copy them) and registered on a client with
 * `defineCommand`, so ioredis uses EVALSHA with an EVAL fallback, also inside pipelines.
 * A line `-- include: <file>.lib.lua` is replaced by that file (Lua shared by two scripts:
 * Redis scripts cannot load one another).
 */
export const SCRIPTS = {
  entityAdvance: 'entity-advance-n.lua',
  cellWrite: 'cell-write-n.lua',
  cellSweep: 'cell-sweep-2.lua',
  cellLive: 'cell-live-2.lua',
} as const;
export type ScriptName = keyof typeof SCRIPTS;

const cache = new Map<string, string>();

const readScript = (file: string): string => readFileSync(join(projectRoot(), 'src', 'store', 'redis', 'scripts', file), 'utf8');

export function scriptSource(name: ScriptName): string {
  const file = SCRIPTS[name];
  let src = cache.get(file);
  if (src === undefined) {
    src = readScript(file).replace(/^-- include: ([\w.-]+\.lib\.lua)$/gm, (_, lib: string) => readScript(lib));
    cache.set(file, src);
  }
  return src;
}

type Arg = string | number | Buffer;
export interface ScriptCommands {
  /** numKeys, then the keys, then the arguments. */
  entityAdvance(numKeys: number, ...keysAndArgs: Arg[]): Promise<unknown>;
  /** numKeys (3 per cell), then the keys, then the arguments. */
  cellWrite(numKeys: number, ...keysAndArgs: Arg[]): Promise<unknown>;
  cellSweep(geo: string, seen: string, ...args: Arg[]): Promise<unknown>;
  cellLive(geo: string, seen: string, ...args: Arg[]): Promise<unknown>;
}
export type ScriptPipeline = {
  entityAdvance(numKeys: number, ...keysAndArgs: Arg[]): ScriptPipeline;
  cellWrite(numKeys: number, ...keysAndArgs: Arg[]): ScriptPipeline;
  cellSweep(geo: string, seen: string, ...args: Arg[]): ScriptPipeline;
  cellLive(geo: string, seen: string, ...args: Arg[]): ScriptPipeline;
  zadd(key: string, ...args: Arg[]): ScriptPipeline;
  hmget(key: string, ...fields: string[]): ScriptPipeline;
  exec(): Promise<[Error | null, unknown][] | null>;
};

const defined = new WeakSet<Redis>();

/** Registers every script on the client (idempotent) and returns it typed. */
export function withScripts(redis: Redis): Redis & ScriptCommands {
  if (!defined.has(redis)) {
    for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
      const m = /-(\d+)\.lua$/.exec(SCRIPTS[name]);
      redis.defineCommand(name, m ? { numberOfKeys: Number(m[1]), lua: scriptSource(name) } : { lua: scriptSource(name) });
    }
    defined.add(redis);
  }
  return redis as Redis & ScriptCommands;
}

export function scriptPipeline(redis: Redis): ScriptPipeline {
  return withScripts(redis).pipeline() as unknown as ScriptPipeline;
}
