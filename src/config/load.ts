import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema, type Config } from './schema.js';
import { ENV_VARS, envNameFor, type EnvVarName } from './env.js';

export const DEV_JWT_SECRET = 'dev-only-secret-change-me-0123456789';

/** The project root (works from src/ under a loader and from dist/src/ when built). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(join(dir, 'package.json'));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Tree = { [k: string]: unknown };

function setPath(obj: Tree, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur: Tree = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {};
    cur = cur[p] as Tree;
  }
  cur[parts[parts.length - 1]!] = value;
}

function deepMerge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object'
      ? deepMerge(b as Tree, v as Tree)
      : v;
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function readJson(file: string): Tree {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Tree;
  } catch (err) {
    throw new ConfigError([`${file}: ${(err as Error).message}`]);
  }
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Defaults file; config/default.json of the project by default. */
  defaultsFile?: string;
  /** Extra overrides applied after files and environment (tests). */
  overrides?: Tree;
}

/**
 * Reads config/default.json, then the file named by CONFIG_FILE (if any), then the
 * environment variables of ENV_VARS; validates everything and returns a frozen object.
 * Throws ConfigError listing every problem, each naming its key and env variable.
 */
export function loadConfig(opts: LoadOptions = {}): Readonly<Config> {
  const env = opts.env ?? process.env;
  let raw = readJson(opts.defaultsFile ?? join(projectRoot(), 'config', 'default.json'));
  if (env.CONFIG_FILE) raw = deepMerge(raw, readJson(resolve(env.CONFIG_FILE)));
  for (const name of Object.keys(ENV_VARS) as EnvVarName[]) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(raw, ENV_VARS[name], v);
  }
  if (opts.overrides) raw = deepMerge(raw, opts.overrides);

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => {
      const path = i.path.join('.');
      const envName = envNameFor(path);
      return `${path}${envName ? ` (${envName})` : ''}: ${i.message}`;
    }));
  }
  const cfg = parsed.data;
  if (cfg.env === 'production' && cfg.auth.jwtSecret === DEV_JWT_SECRET) {
    throw new ConfigError(['auth.jwtSecret (JWT_SECRET): the development secret is refused when env=production']);
  }
  if (cfg.env === 'production' && cfg.http.allowUwsFallback) {
    throw new ConfigError(['http.allowUwsFallback (UWS_ALLOW_FALLBACK): not allowed when env=production']);
  }
  if (!cfg.instanceId) cfg.instanceId = `${hostname()}-${process.pid}`;
  return deepFreeze(cfg);
}
