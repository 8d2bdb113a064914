import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

export type Uws = typeof UWS;

export interface UwsBuild {
  uws: Uws;
  /** True when the native binary loaded; false when the package fell back to pure JS. */
  native: boolean;
  /** The loaded binary (or 'fallback'). */
  build: string;
  version: string;
}

const require = createRequire(import.meta.url);

export class UwsFallbackError extends Error {
  readonly code = 'UWS_NOT_NATIVE';
  constructor() {
    super('uWebSockets.js did not load its native binary and fell back to a slow pure-JS implementation. ' +
      'Use Node 20 on linux x64/arm64 (glibc >= 2.31), reinstall node_modules, ' +
      'or set UWS_ALLOW_FALLBACK=true to run slowly anyway (never in production).');
  }
}

/**
 * Loads uWebSockets.js and tells whether the native binary is in use. The package
 * (@trufflesuite/uws-js-unofficial) silently falls back to pure JS when the binary does not
 * load; we detect that from the module cache, because the binary is the only `.node` file
 * it loads from its `binaries/` folder.
 */
export function loadUws(): UwsBuild {
  const uws = require('uWebSockets.js') as Uws;
  const pkgDir = require.resolve('uWebSockets.js').replace(/src[\\/]uws\.js$/, '');
  const binary = Object.keys(require.cache).find((k) => k.startsWith(pkgDir) && /uws_[^/\\]+\.node$/.test(k));
  const version = (require('uWebSockets.js/package.json') as { version: string }).version;
  return { uws, native: Boolean(binary), build: binary ? binary.slice(pkgDir.length) : 'fallback', version };
}

export function requireNativeUws(allowFallback: boolean): UwsBuild {
  const b = loadUws();
  if (!b.native && !allowFallback) throw new UwsFallbackError();
  return b;
}

