import type { Redis } from 'ioredis';
import type { AcceptedPing } from '../../protocol/ping.js';
import { cellMember, type Keys } from './keys.js';
import { encodeAccepted, STREAM_FIELD } from './codec.js';

export interface LiveWriterOptions {
  entityTtlSeconds: number;
  streamMaxLen: number;
}

/** Writes accepted pings to Redis: per-cell GEO set, last-seen, stream; per-entity state. */
export interface LiveWriter {
  /** Resolves once Redis confirmed every write of the batch (one pipeline). */
  write(pings: readonly AcceptedPing[]): Promise<void>;
}

export function createLiveWriter(redis: Redis, keys: Keys, opts: LiveWriterOptions): LiveWriter {
  const ttlMs = opts.entityTtlSeconds * 1000;
  return {
    async write(pings) {
      if (pings.length === 0) return;
      const byCell = new Map<string, AcceptedPing[]>();
      for (const p of pings) {
        const k = cellMember(p.tenant, p.cell);
        let list = byCell.get(k);
        if (!list) byCell.set(k, (list = []));
        list.push(p);
      }
      const now = Date.now();
      const pipe = redis.pipeline();
      for (const list of byCell.values()) {
        const first = list[0]!;
        const ck = keys.cell(first.tenant, first.cell);
        const geoArgs: (string | number)[] = [];
        const seenArgs: (string | number)[] = [];
        for (const p of list) {
          geoArgs.push(p.lon, p.lat, p.id);
          seenArgs.push(p.rx, p.id); // liveness uses server receive time, not device clocks
          pipe.xadd(ck.stream, 'MAXLEN', '~', opts.streamMaxLen, '*', STREAM_FIELD, encodeAccepted(p));
          pipe.set(keys.entity(p.tenant, p.id), encodeAccepted(p), 'PX', ttlMs);
        }
        pipe.geoadd(ck.geo, ...geoArgs);
        pipe.zadd(ck.seen, ...seenArgs);
        pipe.zadd(keys.activeCells, now, cellMember(first.tenant, first.cell));
      }
      const results = await pipe.exec();
      const failed = results?.find(([err]) => err);
      if (failed) throw failed[0];
    },
  };
}
