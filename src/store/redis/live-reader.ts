import type { Redis } from 'ioredis';
import { circleBBox, tilesInBBox, tileKey, type BBox, type Tile } from '../../geo/tiles.js';
import type { AcceptedPing } from '../../protocol/ping.js';
import type { Keys } from './keys.js';
import { decodeAccepted } from './codec.js';
import { scriptPipeline } from './scripts/index.js';

/** One live entity as the REST API returns it. */
export interface LiveEntity {
  id: string;
  lat: number;
  lon: number;
  /** Device time of the fix, ms. */
  ts: number;
  /** Server receive time of the latest ping, ms (liveness is measured from it). */
  lastSeen: number;
  seq?: number;
  speed?: number;
  heading?: number;
  accuracy?: number;
  kind?: string;
  status?: string;
  meta?: Record<string, string | number | boolean | null>;
}

export interface NearbyHit extends LiveEntity {
  /** Metres from the query point (Redis GEO haversine). */
  distance: number;
}

export interface Filters {
  kind?: string;
  status?: string;
}

export interface NearbyQuery extends Filters {
  tenant: string;
  lat: number;
  lon: number;
  radius: number;
  limit: number;
}

export interface WithinQuery extends Filters {
  tenant: string;
  /** [west, south, east, north]; west > east crosses the antimeridian. */
  bbox: BBox;
  limit: number;
}

export interface LiveReader {
  nearby(q: NearbyQuery): Promise<NearbyHit[]>;
  within(q: WithinQuery): Promise<{ results: LiveEntity[]; truncated: boolean }>;
  /** The latest live state, or undefined when absent or stale. */
  entity(tenant: string, id: string): Promise<LiveEntity | undefined>;
}

export interface LiveReaderOptions {
  ingestZoom: number;
  entityTtlSeconds: number;
  /** Refuse queries that would touch more cells than this. */
  maxCells: number;
}

export class TooManyCellsError extends Error {
  constructor(readonly cells: number) {
    super(`query spans more than ${cells} cells`);
  }
}

interface Candidate { id: string; cell: string; lon: number; lat: number; lastSeen: number; distance: number }

function toEntity(p: AcceptedPing, lastSeen: number): LiveEntity {
  const e: LiveEntity = { id: p.id, lat: p.lat, lon: p.lon, ts: p.ts, lastSeen };
  if (p.seq !== undefined) e.seq = p.seq;
  if (p.speed !== undefined) e.speed = p.speed;
  if (p.heading !== undefined) e.heading = p.heading;
  if (p.accuracy !== undefined) e.accuracy = p.accuracy;
  if (p.kind !== undefined) e.kind = p.kind;
  if (p.status !== undefined) e.status = p.status;
  if (p.meta !== undefined) e.meta = p.meta;
  return e;
}

/**
 * Live queries from the per-cell GEO sets. Round trip 1: one script per cell returns its live
 * members (last-seen within the TTL). Round trip 2: the entity states confirm each candidate
 * (the entity's current cell must be the cell it was found in, which hides a member left
 * behind by a race between gateways until the sweeper removes it) and supply kind/status/ts.
 */
export function createLiveReader(redis: Redis, keys: Keys, opts: LiveReaderOptions): LiveReader {
  const ttlMs = opts.entityTtlSeconds * 1000;

  async function candidates(tenant: string, tiles: Tile[], args: (string | number)[]): Promise<Candidate[]> {
    const cutoff = Date.now() - ttlMs;
    const pipe = scriptPipeline(redis);
    const cells = tiles.map(tileKey);
    for (const c of cells) {
      const ck = keys.cell(tenant, c);
      pipe.cellLive(ck.geo, ck.seen, cutoff, ...args);
    }
    const res = await pipe.exec();
    const out: Candidate[] = [];
    res?.forEach(([err, rows], i) => {
      if (err) throw err;
      const r = rows as string[];
      for (let j = 0; j + 4 < r.length; j += 5) {
        out.push({ id: r[j]!, cell: cells[i]!, lon: Number(r[j + 1]), lat: Number(r[j + 2]), lastSeen: Number(r[j + 3]), distance: r[j + 4] === '' ? NaN : Number(r[j + 4]) });
      }
    });
    return out;
  }

  /**
   * Confirms candidates (in order) against entity state: the first `limit` confirmed, and whether
   * one more was confirmed beyond them (`more`: the answer is truncated).
   */
  async function confirm(tenant: string, list: Candidate[], limit: number, f: Filters): Promise<{ hits: (Candidate & { e: LiveEntity })[]; more: boolean }> {
    const hits: (Candidate & { e: LiveEntity })[] = [];
    const cutoff = Date.now() - ttlMs;
    const seen = new Set<string>();
    let i = 0;
    const want = limit + 1;
    const chunk = f.kind || f.status ? 2000 : Math.max(want + 16, 64);
    while (i < list.length && hits.length < want) {
      const part = list.slice(i, i + chunk);
      i += part.length;
      const pipe = redis.pipeline();
      for (const c of part) pipe.hmgetBuffer(keys.entity(tenant, c.id), 'cell', 'rx', 'p');
      const res = await pipe.exec();
      part.forEach((c, j) => {
        if (hits.length >= want || seen.has(c.id)) return;
        const [err, row] = res![j]!;
        if (err) throw err;
        const [cell, rx, p] = row as [Buffer | null, Buffer | null, Buffer | null];
        if (cell === null || rx === null || p === null || cell.toString() !== c.cell || Number(rx) < cutoff) return;
        const ping = decodeAccepted(p);
        if (f.kind !== undefined && ping.kind !== f.kind) return;
        if (f.status !== undefined && ping.status !== f.status) return;
        seen.add(c.id);
        hits.push({ ...c, e: toEntity(ping, Number(rx)) });
      });
    }
    return { hits: hits.slice(0, limit), more: hits.length > limit };
  }

  return {
    async nearby(q) {
      const tiles = tilesInBBox(circleBBox(q.lat, q.lon, q.radius), opts.ingestZoom, opts.maxCells);
      if (!tiles) throw new TooManyCellsError(opts.maxCells);
      // Redis GEOSEARCH FROMLONLAT 180 misses members just east of the antimeridian (-179.99…);
      // -180 is the same meridian and finds both sides.
      const lon = q.lon === 180 ? -180 : q.lon;
      const list = await candidates(q.tenant, tiles, ['radius', lon, q.lat, q.radius]);
      list.sort((a, b) => a.distance - b.distance);
      const { hits } = await confirm(q.tenant, list, q.limit, q);
      // Position and distance from the GEO set (52-bit geohash precision, as Redis answers).
      return hits.map((h) => ({ ...h.e, lat: h.lat, lon: h.lon, distance: h.distance }));
    },

    async within(q) {
      const tiles = tilesInBBox(q.bbox, opts.ingestZoom, opts.maxCells);
      if (!tiles) throw new TooManyCellsError(opts.maxCells);
      const [w, s, e, n] = q.bbox;
      const inLon = w <= e ? (lon: number) => lon >= w && lon <= e : (lon: number) => lon >= w || lon <= e;
      const list = (await candidates(q.tenant, tiles, ['all'])).filter((c) => c.lat >= s && c.lat <= n && inLon(c.lon));
      list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const { hits, more } = await confirm(q.tenant, list, q.limit, q);
      return { results: hits.map((h) => ({ ...h.e, lat: h.lat, lon: h.lon })), truncated: more };
    },

    async entity(tenant, id) {
      const [rx, p] = await redis.hmgetBuffer(keys.entity(tenant, id), 'rx', 'p');
      if (rx == null || p == null || Number(rx) < Date.now() - ttlMs) return undefined;
      return toEntity(decodeAccepted(p), Number(rx));
    },
  };
}
