/**
 * The live map page and its assets, served by the gateway: `/` and `/map` (public/index.html),
 * `/static/*` (public/), `/vendor/*` (the few browser builds the page needs, from node_modules:
 * Leaflet, msgpackr, socket.io-client: no CDN), `/data/porto-roads.json` (the Porto street
 * network for the offline base layer, © OpenStreetMap contributors, ODbL), and, outside
 * production, `GET /v1/demo-token` (a subscribe+query token for tenant `demo`).
 * Files are read once and cached; paths are resolved inside their folder (no traversal).
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../../log/logger.js';
import { mintHmacToken } from '../../auth/tokens.js';
import { errorBody, route, type HttpResult } from '../respond.js';

export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

export interface StaticDeps {
  log: Logger;
  /** Project root (public/ and node_modules/ live there). */
  root: string;
  /** Data folder holding porto-roads/ (simulator's data), if any. */
  dataDir?: string;
  /** The demo token endpoint exists only when this is set (env != production). */
  demo?: { jwtSecret: string; issuer: string; tenant: string; ttlSeconds: number };
}

/** Folders a URL prefix may read from (vendor entries map one URL folder to one package folder). */
function mounts(root: string): Record<string, string> {
  const nm = join(root, 'node_modules');
  return {
    '/static/': join(root, 'public'),
    '/vendor/leaflet/': join(nm, 'leaflet', 'dist'),
    '/vendor/msgpackr/': join(nm, 'msgpackr', 'dist'),
    '/vendor/socket.io/': join(nm, 'socket.io-client', 'dist'),
  };
}

/**
 * Resolves a URL path under a mount to a file path, or undefined when it would leave the
 * folder (`..`, encoded separators, NUL) or is not a served file type.
 */
export function resolveStatic(base: string, rest: string): string | undefined {
  let decoded: string;
  try { decoded = decodeURIComponent(rest); } catch { return undefined; }
  if (decoded.includes('\0') || decoded.includes('\\') || decoded.split('/').some((p) => p === '..' || p === '.')) return undefined;
  if (!CONTENT_TYPES[extname(decoded).toLowerCase()]) return undefined;
  const file = resolve(base, '.' + (decoded.startsWith('/') ? decoded : '/' + decoded));
  const baseAbs = resolve(base);
  return file.startsWith(baseAbs + sep) ? file : undefined;
}

export function registerStaticRoutes(app: TemplatedApp, d: StaticDeps): void {
  const cache = new Map<string, Buffer>();
  const m = mounts(d.root);
  const read = async (file: string): Promise<Buffer | undefined> => {
    const hit = cache.get(file);
    if (hit) return hit;
    try {
      const buf = await readFile(file);
      if (cache.size < 500) cache.set(file, buf);
      return buf;
    } catch {
      return undefined;
    }
  };
  const serveFile = async (file: string | undefined, cacheControl: string): Promise<HttpResult> => {
    const buf = file ? await read(file) : undefined;
    if (!file || !buf) return { status: 404, body: errorBody('NOT_FOUND', 'no such file') };
    return { status: 200, body: buf, contentType: CONTENT_TYPES[extname(file).toLowerCase()]!, headers: { 'cache-control': cacheControl, 'x-content-type-options': 'nosniff' } };
  };

  const page = route(d.log, () => serveFile(join(d.root, 'public', 'index.html'), 'no-cache'));
  app.get('/', page);
  app.get('/map', page);
  for (const [prefix, base] of Object.entries(m)) {
    const cacheControl = prefix === '/static/' ? 'no-cache' : 'public, max-age=3600';
    app.get(`${prefix}*`, route(d.log, (call) => serveFile(resolveStatic(base, call.url.slice(prefix.length)), cacheControl)));
  }

  let roads: Promise<Buffer | undefined> | undefined;
  app.get('/data/porto-roads.json', route(d.log, async () => {
    roads ??= buildRoads(d.dataDir);
    const body = await roads;
    if (!body) return { status: 404, body: errorBody('NOT_FOUND', 'no road data on this server') };
    return { status: 200, body, contentType: CONTENT_TYPES['.json']!, headers: { 'cache-control': 'public, max-age=86400' } };
  }));

  if (d.demo) {
    const demo = d.demo;
    app.get('/v1/demo-token', route(d.log, async () => {
      const sub = `map-${randomBytes(4).toString('hex')}`;
      const token = await mintHmacToken(demo.jwtSecret, { sub, tenant: demo.tenant, scopes: ['subscribe', 'query'], ttlSeconds: demo.ttlSeconds, issuer: demo.issuer });
      return { status: 200, body: { token, tenant: demo.tenant, sub, scopes: ['subscribe', 'query'], expiresIn: demo.ttlSeconds }, headers: { 'cache-control': 'no-store' } };
    }));
  }
}

/** The Porto streets as `{ attribution, lines: [[lon,lat,lon,lat,…], …] }` with 5-decimal coordinates. */
async function buildRoads(dataDir: string | undefined): Promise<Buffer | undefined> {
  if (!dataDir) return undefined;
  const file = join(dataDir, 'porto-roads', 'porto_roads.csv');
  if (!existsSync(file)) return undefined;
  const text = await readFile(file, 'utf8');
  const lines: number[][] = [];
  for (const m of text.matchAll(/"(\[\[.*?\]\])"/g)) {
    const coords = JSON.parse(m[1]!) as [number, number][];
    lines.push(coords.flatMap(([lon, lat]) => [Math.round(lon * 1e5) / 1e5, Math.round(lat * 1e5) / 1e5]));
  }
  return Buffer.from(JSON.stringify({ attribution: '© OpenStreetMap contributors (ODbL)', lines }));
}

