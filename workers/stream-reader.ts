import type { Redis } from 'ioredis';
import type { Keys } from '../src/store/redis/keys.js';
import { parseCellMember } from '../src/store/redis/keys.js';
import { decodeAccepted, STREAM_FIELD } from '../src/store/redis/codec.js';
import type { AcceptedPing } from '../src/protocol/ping.js';

export interface StreamEntry {
  stream: string;
  entryId: string;
  ping: AcceptedPing;
}

export interface ReadResult {
  entries: StreamEntry[];
  /** Entries that could not be decoded (poison). */
  poison: { stream: string; entryId: string; reason: string }[];
}

type XReadReply = [string, [string, (string | Buffer)[]][]][] | null;

/** Reads new entries of every active cell stream through a consumer group. */
export function createStreamReader(redis: Redis, keys: Keys, group: string, consumer: string, count: number) {
  const groups = new Set<string>();

  async function ensureGroup(stream: string): Promise<void> {
    if (groups.has(stream)) return;
    try {
      await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    groups.add(stream);
  }

  return {
    /** Streams of cells that saw pings since `sinceMs`. */
    async activeStreams(sinceMs: number): Promise<string[]> {
      const members = await redis.zrangebyscore(keys.activeCells, sinceMs, '+inf');
      return members.map((m) => {
        const { tenant, cell } = parseCellMember(m);
        return keys.cell(tenant, cell).stream;
      });
    },

    async read(streams: string[]): Promise<ReadResult> {
      for (const s of streams) await ensureGroup(s);
      const pipe = redis.pipeline();
      for (const s of streams) pipe.callBuffer('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', s, '>');
      const replies = (await pipe.exec()) ?? [];
      const out: ReadResult = { entries: [], poison: [] };
      replies.forEach(([err, reply], i) => {
        if (err) throw err;
        const stream = streams[i]!;
        for (const [, entries] of (reply as XReadReply) ?? []) {
          for (const [rawId, fields] of entries) {
            const entryId = rawId.toString();
            const idx = fields.findIndex((f) => f.toString() === STREAM_FIELD);
            const value = idx >= 0 ? fields[idx + 1] : undefined;
            try {
              if (!value) throw new Error(`no '${STREAM_FIELD}' field`);
              out.entries.push({ stream, entryId, ping: decodeAccepted(Buffer.from(value)) });
            } catch (e) {
              out.poison.push({ stream, entryId, reason: (e as Error).message });
            }
          }
        }
      });
      return out;
    },

    async ack(byStream: Map<string, string[]>): Promise<void> {
      if (byStream.size === 0) return;
      const pipe = redis.pipeline();
      for (const [s, ids] of byStream) pipe.xack(s, group, ...ids);
      const res = await pipe.exec();
      const failed = res?.find(([e]) => e);
      if (failed) throw failed[0];
    },
  };
}

export type StreamReader = ReturnType<typeof createStreamReader>;
