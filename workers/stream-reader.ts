import type { Redis } from 'ioredis';
import type { Keys } from '../src/store/redis/keys.js';
import { parseCellMember } from '../src/store/redis/keys.js';
import { STREAM_FIELD } from '../src/store/redis/codec.js';
import { decodeEntry, type StagedPing } from './entry.js';
import { isPoison } from './errors.js';

export interface StreamEntry {
  stream: string;
  entryId: string;
  ping: StagedPing;
}

export interface PoisonEntry {
  stream: string;
  entryId: string;
  reason: string;
  raw?: Buffer;
}

export interface ReadResult {
  entries: StreamEntry[];
  /** Entries that could not be decoded or checked (poison). */
  poison: PoisonEntry[];
  /** Ids that were pending but no longer exist in the stream (trimmed): ack them. */
  gone: { stream: string; entryId: string }[];
  /** Some stream had more than one read returns: flush again at once. */
  more: boolean;
}

export interface StreamsInfo {
  /** Entries read by some consumer and not acked yet, summed over streams. */
  pending: number;
  /** Entries not yet delivered to any consumer, summed over streams. */
  undelivered: number;
  /** Id time (ms) of the oldest entry not yet persisted (pending or undelivered), if any. */
  oldestMs: number | undefined;
}

type RawEntry = [Buffer, Buffer[] | null];
const FIELD = Buffer.from(STREAM_FIELD);

const idMs = (id: string): number => Number(id.slice(0, id.indexOf('-')));
/** Compares two stream ids `ms-seq`. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}
const nextId = (id: string): string => {
  const [ms, seq] = id.split('-') as [string, string];
  return `${ms}-${BigInt(seq) + 1n}`;
};

/**
 * Reads cell streams through a consumer group: own pending entries (after a restart),
 * entries other consumers left pending too long (XAUTOCLAIM), and new entries.
 */
export function createStreamReader(redis: Redis, keys: Keys, group: string, consumer: string, count: number) {
  const groups = new Set<string>();

  async function ensureGroups(streams: string[]): Promise<void> {
    const missing = streams.filter((s) => !groups.has(s));
    if (missing.length === 0) return;
    const pipe = redis.pipeline();
    for (const s of missing) pipe.xinfo('GROUPS', s);
    const infos = (await pipe.exec()) ?? [];
    const create = redis.pipeline();
    let n = 0;
    missing.forEach((s, i) => {
      const [err, reply] = infos[i] ?? [];
      const names = err ? [] : (reply as unknown[][]).map((g) => String(g[1]));
      if (!names.includes(group)) { create.xgroup('CREATE', s, group, '0', 'MKSTREAM'); n++; }
    });
    if (n > 0) await create.exec(); // BUSYGROUP from a concurrent creator is harmless: the group exists
    for (const s of missing) groups.add(s);
  }

  function collect(stream: string, list: RawEntry[] | null | undefined, out: ReadResult): number {
    let n = 0;
    for (const [rawId, fields] of list ?? []) {
      n++;
      const entryId = rawId.toString();
      if (!fields) { out.gone.push({ stream, entryId }); continue; }
      let value: Buffer | undefined;
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const f = fields[i]!;
        if (f.length === FIELD.length && f.equals(FIELD)) { value = fields[i + 1]; break; }
      }
      try {
        out.entries.push({ stream, entryId, ping: decodeEntry(value) });
      } catch (err) {
        if (!isPoison(err)) throw err;
        out.poison.push({ stream, entryId, reason: err.message, ...(value ? { raw: value } : {}) });
      }
    }
    return n;
  }

  async function readGroup(streams: string[], id: '0' | '>', out: ReadResult): Promise<void> {
    const pipe = redis.pipeline();
    for (const s of streams) pipe.callBuffer('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', s, id);
    const replies = (await pipe.exec()) ?? [];
    replies.forEach(([err, reply], i) => {
      if (err) { groups.clear(); throw err; } // e.g. NOGROUP after a Redis restart: recreate next time
      for (const [, list] of (reply as [Buffer, RawEntry[]][] | null) ?? []) {
        if (collect(streams[i]!, list, out) >= count) out.more = true;
      }
    });
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

    /**
     * One batch: `own` = this consumer's pending entries (first flush after a restart),
     * then entries idle longer than `claimIdleMs` in any consumer, then new entries.
     */
    async read(streams: string[], opts: { own: boolean; claim: boolean; claimIdleMs: number }): Promise<ReadResult> {
      const out: ReadResult = { entries: [], poison: [], gone: [], more: false };
      if (streams.length === 0) return out;
      await ensureGroups(streams);
      if (opts.own) await readGroup(streams, '0', out);
      const pipe = redis.pipeline();
      if (opts.claim) for (const s of streams) pipe.callBuffer('XAUTOCLAIM', s, group, consumer, opts.claimIdleMs, '0-0', 'COUNT', count);
      const claims = opts.claim ? (await pipe.exec()) ?? [] : [];
      claims.forEach(([err, reply], i) => {
        if (err) { groups.clear(); throw err; }
        const [cursor, list, deleted] = reply as [Buffer, RawEntry[], Buffer[] | undefined];
        if (collect(streams[i]!, list, out) >= count || cursor.toString() !== '0-0') out.more = true;
        for (const d of deleted ?? []) out.gone.push({ stream: streams[i]!, entryId: d.toString() });
      });
      await readGroup(streams, '>', out);
      // The same entry may come from both own-pending and XAUTOCLAIM: keep one (only then can it repeat).
      if (opts.own && opts.claim) {
        const seen = new Set<string>();
        out.entries = out.entries.filter((e) => { const k = `${e.stream} ${e.entryId}`; if (seen.has(k)) return false; seen.add(k); return true; });
      }
      return out;
    },

    async ack(byStream: Map<string, string[]>): Promise<void> {
      if (byStream.size === 0) return;
      const pipe = redis.pipeline();
      for (const [s, ids] of byStream) for (let i = 0; i < ids.length; i += 10000) pipe.xack(s, group, ...ids.slice(i, i + 10000));
      const res = await pipe.exec();
      const failed = res?.find(([e]) => e);
      if (failed) throw failed[0];
    },

    /**
     * Removes consumers of dead workers (another pid, another host) from the group once they
     * hold nothing (pending 0) and have been idle longer than `idleMs`; live workers read
     * every flush, so their idle time stays small. Returns how many were removed.
     */
    async pruneConsumers(streams: string[], idleMs: number): Promise<number> {
      if (streams.length === 0) return 0;
      const p1 = redis.pipeline();
      for (const s of streams) p1.xinfo('CONSUMERS', s, group);
      const infos = (await p1.exec()) ?? [];
      const p2 = redis.pipeline();
      let n = 0;
      infos.forEach(([err, reply], i) => {
        if (err) return;
        for (const c of reply as unknown[][]) {
          const m = new Map<string, unknown>();
          for (let j = 0; j + 1 < c.length; j += 2) m.set(String(c[j]), c[j + 1]);
          const name = String(m.get('name'));
          if (name !== consumer && Number(m.get('pending')) === 0 && Number(m.get('idle')) > idleMs) {
            p2.xgroup('DELCONSUMER', streams[i]!, group, name);
            n++;
          }
        }
      });
      if (n > 0) await p2.exec();
      return n;
    },

    /** Copies poison entries to the dead-letter stream with the reason (caller acks them). */
    async deadLetter(list: PoisonEntry[], maxLen = 100_000): Promise<void> {
      if (list.length === 0) return;
      const pipe = redis.pipeline();
      for (const p of list) {
        pipe.xadd(keys.deadLetters, 'MAXLEN', '~', maxLen, '*', 'stream', p.stream, 'id', p.entryId, 'reason', p.reason,
          'at', String(Date.now()), 'raw', p.raw ?? Buffer.alloc(0));
      }
      const res = await pipe.exec();
      const failed = res?.find(([e]) => e);
      if (failed) throw failed[0];
    },

    /**
     * Pending/undelivered counts and the oldest unpersisted entry; with `trim`, drops the
     * acknowledged history: XTRIM MINID to the lowest id still pending or not yet delivered.
     * last-delivered-id is read BEFORE the pending summary, so every id below the computed
     * minimum was delivered and acknowledged (an acked entry never becomes pending again).
     */
    async inspect(streams: string[], trim: boolean): Promise<StreamsInfo> {
      const info: StreamsInfo = { pending: 0, undelivered: 0, oldestMs: undefined };
      if (streams.length === 0) return info;
      const p1 = redis.pipeline();
      for (const s of streams) p1.xinfo('GROUPS', s);
      const groupsInfo = (await p1.exec()) ?? [];
      const p2 = redis.pipeline();
      for (const s of streams) p2.xpending(s, group);
      const pend = (await p2.exec()) ?? [];
      const lags: number[] = [];
      const last: (string | undefined)[] = streams.map((_, i) => {
        const [err, reply] = groupsInfo[i] ?? [];
        if (err) return undefined;
        for (const g of reply as unknown[][]) {
          const m = new Map<string, unknown>();
          for (let j = 0; j + 1 < g.length; j += 2) m.set(String(g[j]), g[j + 1]);
          if (m.get('name') === group) {
            lags[i] = Number(m.get('lag') ?? 0) || 0;
            return String(m.get('last-delivered-id'));
          }
        }
        return undefined;
      });
      const p3 = redis.pipeline();
      for (let i = 0; i < streams.length; i++) p3.xrange(streams[i]!, `(${last[i] ?? '0-0'}`, '+', 'COUNT', 1);
      const firstUndelivered = (await p3.exec()) ?? [];
      const p4 = redis.pipeline();
      let trims = 0;
      for (let i = 0; i < streams.length; i++) {
        const [perr, summary] = pend[i] ?? [];
        if (perr || last[i] === undefined) continue;
        const [n, minPending] = summary as [number, string | null];
        info.pending += Number(n);
        const next = ((firstUndelivered[i]?.[1] ?? []) as [string, string[]][])[0]?.[0];
        if (next) info.undelivered += Math.max(1, lags[i] ?? 0);
        const candidates = [minPending, next].filter((x): x is string => Boolean(x));
        for (const c of candidates) info.oldestMs = Math.min(info.oldestMs ?? Infinity, idMs(c));
        if (trim) {
          const minId = candidates.length ? candidates.sort(compareIds)[0]! : nextId(last[i]!);
          if (last[i] !== '0-0') { p4.xtrim(streams[i]!, 'MINID', minId); trims++; }
        }
      }
      if (trims > 0) await p4.exec();
      return info;
    },
  };
}

export type StreamReader = ReturnType<typeof createStreamReader>;
