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

/** Most XREADGROUP slices per phase and round (the round ends there; `more` says to read again). */
const MAX_SLICES = 8;

/**
 * Splits `budget` over streams in order, each at most its cap: floor(budget / n) each, one
 * more for the first budget % n. The sum never exceeds the budget (unlike ceil(budget / n)
 * each, which with more streams than budget reads one entry from every stream).
 */
export function sliceCounts(caps: readonly number[], budget: number): number[] {
  if (!Number.isFinite(budget)) return caps.map((c) => Math.max(0, c));
  const n = caps.length;
  const b = Math.max(0, Math.floor(budget));
  const base = Math.floor(b / n), extra = b - base * n;
  return caps.map((c, i) => Math.max(0, Math.min(c, base + (i < extra ? 1 : 0))));
}

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

  /**
   * Reader state across rounds. Streams whose own pending entries (left by a previous process
   * with this consumer name) are still being read, with the last id read: they are read from
   * there on (XREADGROUP with an id returns this consumer's pending entries above it), and get
   * neither XAUTOCLAIM nor new entries until that is done, so no entry is read twice. Streams
   * still to XAUTOCLAIM in this claim cycle, with the scan cursor. Per phase, the stream after
   * which the next round starts (see `rotate`). A round works on copies and keeps them only if
   * it succeeds: a failed round is read again from the same cursors.
   */
  let ownFrom = new Map<string, string>();
  let claimFrom = new Map<string, string>();
  const turn: Record<'own' | 'claim' | 'new', string> = { own: '', claim: '', new: '' };

  /**
   * The streams in name order, starting after the last one favoured in this phase's previous
   * slice: when the budget does not reach every stream (or does not split evenly), the next
   * round serves the others first, so no stream starves.
   */
  function rotate(streams: string[], phase: keyof typeof turn): string[] {
    const sorted = [...streams].sort();
    const i = sorted.findIndex((s) => s > turn[phase]);
    return i <= 0 ? sorted : [...sorted.slice(i), ...sorted.slice(0, i)];
  }

  /**
   * COUNTs for one slice over `streams` (in order). When the budget does not split evenly, the
   * first budget % n streams get one more (with fewer entries of budget than streams: only
   * they are read); the next round of this phase starts after the last of them.
   */
  function slice(streams: string[], phase: keyof typeof turn, caps: number[], budget: number): number[] {
    const extra = Number.isFinite(budget) ? Math.floor(budget) % streams.length : 0;
    if (extra > 0) turn[phase] = streams[extra - 1]!;
    return sliceCounts(caps, budget);
  }

  /**
   * XREADGROUP in slices, at most `budget` entries in all and `count` per stream: own pending
   * entries (`own`, from each stream's cursor) or new ones (`>`). The first slice splits the
   * budget evenly; streams that filled their share (they may hold more) share what is left in
   * the next slice, streams left out of a slice come first in it. Returns the entries read.
   */
  async function readSlices(phase: 'own' | 'new', streams: string[], ownFrom: Map<string, string>, budget: number, out: ReadResult): Promise<number> {
    let used = 0;
    const taken = new Map<string, number>();
    let cands = rotate(streams, phase);
    for (let pass = 0; cands.length > 0 && used < budget && pass < MAX_SLICES; pass++) {
      const counts = slice(cands, phase, cands.map((s) => count - (taken.get(s) ?? 0)), budget - used);
      const asked: [string, number][] = [];
      const skipped: string[] = [];
      cands.forEach((s, i) => { if (counts[i]! > 0) asked.push([s, counts[i]!]); else skipped.push(s); });
      const pipe = redis.pipeline();
      for (const [s, n] of asked) pipe.callBuffer('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', s, phase === 'own' ? ownFrom.get(s)! : '>');
      const replies = (await pipe.exec()) ?? [];
      const hungry: string[] = [];
      replies.forEach(([err, reply], i) => {
        if (err) { groups.clear(); throw err; } // e.g. NOGROUP after a Redis restart: recreate next time
        const [s, n] = asked[i]!;
        const list = (reply as [Buffer, RawEntry[]][] | null)?.[0]?.[1] ?? [];
        const got = collect(s, list, out);
        used += got;
        const total = (taken.get(s) ?? 0) + got;
        taken.set(s, total);
        if (phase === 'own') {
          if (got < n) ownFrom.delete(s); // all of this consumer's pending entries of s are read
          else ownFrom.set(s, list[list.length - 1]![0].toString());
        }
        if (got >= n) {
          if (total < count) hungry.push(s);
          else out.more = true; // WORKER_READ_COUNT reached for this stream in this round
        }
      });
      cands = [...skipped, ...hungry];
    }
    if (cands.length > 0) out.more = true; // budget (or slices) used up while some streams may hold more
    return used;
  }

  /**
   * XAUTOCLAIM, one call per stream and round, at most `budget` entries in all (claimed +
   * deleted ids: Redis counts both against COUNT), continuing each stream's scan where the
   * previous round of this cycle left it.
   */
  async function claimSlice(streams: string[], claimFrom: Map<string, string>, idleMs: number, budget: number, out: ReadResult): Promise<number> {
    if (streams.length === 0) return 0;
    const cands = rotate(streams, 'claim');
    const counts = slice(cands, 'claim', cands.map(() => count), budget);
    const asked: [string, number][] = [];
    cands.forEach((s, i) => { if (counts[i]! > 0) asked.push([s, counts[i]!]); else out.more = true; });
    const pipe = redis.pipeline();
    for (const [s, n] of asked) pipe.callBuffer('XAUTOCLAIM', s, group, consumer, idleMs, claimFrom.get(s)!, 'COUNT', n);
    const replies = (await pipe.exec()) ?? [];
    let used = 0;
    replies.forEach(([err, reply], i) => {
      if (err) { groups.clear(); throw err; }
      const [s, n] = asked[i]!;
      const [cursor, list, deleted] = reply as [Buffer, RawEntry[], Buffer[] | undefined];
      used += collect(s, list, out);
      for (const d of deleted ?? []) { out.gone.push({ stream: s, entryId: d.toString() }); used++; }
      const next = cursor.toString();
      if (next === '0-0') claimFrom.delete(s); // scanned to the end of the pending list
      else { claimFrom.set(s, next); out.more = true; }
      if (list.length >= n) out.more = true;
    });
    return used;
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
     * One read round, at most `budget` entries (default: unbounded) and `count` per stream and
     * phase: this consumer's pending entries (from `own`, the first round after a restart, until
     * all are read), then entries idle longer than `claimIdleMs` in any consumer (from `claim`,
     * once per flush cycle, until each stream's pending list is scanned), then new entries.
     */
    async read(streams: string[], opts: { own: boolean; claim: boolean; claimIdleMs: number; budget?: number }): Promise<ReadResult> {
      const out: ReadResult = { entries: [], poison: [], gone: [], more: false };
      if (streams.length === 0) return out;
      await ensureGroups(streams);
      let left = opts.budget ?? Infinity;
      const own = new Map(ownFrom);
      const claim = opts.claim ? new Map(streams.map((s) => [s, '0-0'])) : new Map(claimFrom);
      if (opts.own) for (const s of streams) if (!own.has(s)) own.set(s, '0');
      if (left <= 0) { ownFrom = own; claimFrom = claim; out.more = true; return out; }
      left -= await readSlices('own', streams.filter((s) => own.has(s)), own, left, out);
      const settled = streams.filter((s) => !own.has(s));
      if (left > 0) left -= await claimSlice(settled.filter((s) => claim.has(s)), claim, opts.claimIdleMs, left, out);
      else if (settled.some((s) => claim.has(s))) out.more = true;
      if (left > 0) await readSlices('new', settled, own, left, out);
      else out.more = true;
      ownFrom = own;
      claimFrom = claim;
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
