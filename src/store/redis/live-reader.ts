import type { Redis } from 'ioredis';
import { circleBBox, tilesInBBox, tileKey } from '../../geo/tiles.js';
import type { Keys } from './keys.js';

export interface NearbyHit {
  id: string;
  lat: number;
  lon: number;
  distance: number;
  lastSeen: number;
}

export interface NearbyQuery {
  tenant: string;
  lat: number;
  lon: number;
  radius: number;
  limit: number;
}

export interface LiveReader {
  nearby(q: NearbyQuery): Promise<NearbyHit[]>;
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

/** Live queries answered from the per-cell GEO sets, never returning stale entities. */
export function createLiveReader(redis: Redis, keys: Keys, opts: LiveReaderOptions): LiveReader {
  return {
    async nearby(q) {
      const tiles = tilesInBBox(circleBBox(q.lat, q.lon, q.radius), opts.ingestZoom, opts.maxCells);
      if (!tiles) throw new TooManyCellsError(opts.maxCells);
      const pipe = redis.pipeline();
      const cells = tiles.map((t) => keys.cell(q.tenant, tileKey(t)));
      for (const ck of cells) {
        pipe.geosearch(ck.geo, 'FROMLONLAT', q.lon, q.lat, 'BYRADIUS', q.radius, 'm', 'ASC', 'COUNT', q.limit, 'WITHCOORD', 'WITHDIST');
      }
      const res = await pipe.exec();
      const candidates: { id: string; cell: number; distance: number; lon: number; lat: number }[] = [];
      res?.forEach(([err, rows], cell) => {
        if (err) throw err;
        for (const r of rows as [string, string, [string, string]][]) {
          candidates.push({ id: r[0], cell, distance: Number(r[1]), lon: Number(r[2][0]), lat: Number(r[2][1]) });
        }
      });
      if (candidates.length === 0) return [];
      // Liveness: drop members whose last-seen is older than the TTL.
      const seenPipe = redis.pipeline();
      for (const c of candidates) seenPipe.zscore(cells[c.cell]!.seen, c.id);
      const seen = await seenPipe.exec();
      const cutoff = Date.now() - opts.entityTtlSeconds * 1000;
      const hits: NearbyHit[] = [];
      candidates.forEach((c, i) => {
        const score = seen?.[i]?.[1];
        const lastSeen = score == null ? NaN : Number(score);
        if (lastSeen >= cutoff) hits.push({ id: c.id, lat: c.lat, lon: c.lon, distance: c.distance, lastSeen });
      });
      hits.sort((a, b) => a.distance - b.distance);
      return hits.slice(0, q.limit);
    },
  };
}
