import type { Redis } from 'ioredis';
import type { AcceptedPing } from '../../protocol/ping.js';
import type { LiveMove, LivePosition } from '../../protocol/live.js';
import { cellMember, entityBucket, type Keys } from './keys.js';
import { encodeAccepted, STREAM_FIELD } from './codec.js';
import { scriptPipeline } from './scripts/index.js';

export interface LiveWriterOptions {
  entityTtlSeconds: number;
  streamMaxLen: number;
  /** Implied speed above this (m/s) flags a ping as an implausible jump. */
  maxSpeedMps: number;
  /** GPS noise allowance (metres) subtracted from the jump distance before the speed check. */
  jumpSlackMeters: number;
}

/**
 * What happened to each ping:
 * - `advanced`: newest for its entity: live state (GEO, seen, entity state) and history (stream);
 * - `history`: older than the entity's latest: stream only, live position unchanged;
 * - `duplicate`: same entity and ts/seq as a recent ping: dropped (already durable);
 * - `implausible`: implied speed above the limit: kept out of live state and history.
 */
export type Outcome = 'advanced' | 'history' | 'duplicate' | 'implausible';

export interface WriteResult {
  /** One per input ping, same order. */
  outcomes: Outcome[];
  /** Pings that advanced live state, in order, with the previous position when known. */
  moves: LiveMove[];
}

/** Writes accepted pings to Redis: per-entity state (per key bucket), then per-cell GEO/seen/stream. */
export interface LiveWriter {
  /** Resolves once Redis confirmed every write of the batch (two pipelined round trips). */
  write(pings: readonly AcceptedPing[]): Promise<WriteResult>;
}

const OUTCOME: Record<number, Outcome> = { 0: 'duplicate', 1: 'advanced', 2: 'history', 3: 'implausible' };

export function livePosition(p: AcceptedPing): LivePosition {
  const pos: LivePosition = { tenant: p.tenant, id: p.id, lat: p.lat, lon: p.lon, ts: p.ts };
  if (p.speed !== undefined) pos.speed = p.speed;
  if (p.heading !== undefined) pos.heading = p.heading;
  if (p.kind !== undefined) pos.kind = p.kind;
  if (p.status !== undefined) pos.status = p.status;
  return pos;
}

export function createLiveWriter(redis: Redis, keys: Keys, opts: LiveWriterOptions): LiveWriter {
  const ttlMs = opts.entityTtlSeconds * 1000;
  return {
    async write(pings) {
      if (pings.length === 0) return { outcomes: [], moves: [] };
      // 1. Per entity bucket (one hash tag): one script call decides every ping of its entities.
      const byEntity = new Map<string, number[]>();
      pings.forEach((p, i) => {
        const k = `${p.tenant}\u0000${p.id}`;
        let list = byEntity.get(k);
        if (!list) byEntity.set(k, (list = []));
        list.push(i);
      });
      const packed = pings.map((p) => encodeAccepted(p));
      const byBucket = new Map<string, number[][]>();
      for (const idx of byEntity.values()) {
        const first = pings[idx[0]!]!;
        const b = `${first.tenant}\u0000${entityBucket(first.id)}`;
        let list = byBucket.get(b);
        if (!list) byBucket.set(b, (list = []));
        list.push(idx);
      }
      const pipe1 = scriptPipeline(redis);
      const order: number[][] = [];
      for (const group of byBucket.values()) {
        const ks: string[] = [];
        const args: (string | number | Buffer)[] = [ttlMs, opts.maxSpeedMps, opts.jumpSlackMeters];
        for (const idx of group) {
          const first = pings[idx[0]!]!;
          ks.push(keys.entity(first.tenant, first.id));
          args.push(idx.length);
          for (const i of idx) {
            const p = pings[i]!;
            args.push(p.ts, p.seq ?? '', p.lat, p.lon, p.cell, p.rx, packed[i]!);
          }
          order.push(idx);
        }
        pipe1.entityAdvance(ks.length, ...ks, ...args);
      }
      const r1 = await pipe1.exec();
      const rows: (string | number)[][] = [];
      for (const [err, res] of r1 ?? []) {
        if (err) throw err;
        for (const row of res as (string | number)[][]) rows.push(row);
      }
      const outcomes: Outcome[] = new Array<Outcome>(pings.length);
      const moves: LiveMove[] = [];
      // 2. Per cell (one hash tag each): live-state add/remove and history, in ping order.
      const cellOps = new Map<string, { tenant: string; cell: string; ops: (string | number | Buffer)[] }>();
      const opsOf = (tenant: string, cell: string): (string | number | Buffer)[] => {
        const k = cellMember(tenant, cell);
        let c = cellOps.get(k);
        if (!c) cellOps.set(k, (c = { tenant, cell, ops: [] }));
        return c.ops;
      };
      for (let e = 0; e < order.length; e++) {
        const idx = order[e]!;
        const row = rows[e]!;
        const prevCell = String(row[0]);
        let prev: { lat: number; lon: number } | undefined = row[1] !== '' ? { lat: Number(row[1]), lon: Number(row[2]) } : undefined;
        let last: AcceptedPing | undefined;
        idx.forEach((i, j) => {
          const o = OUTCOME[Number(row[3 + j])] ?? 'implausible';
          outcomes[i] = o;
          const p = pings[i]!;
          if (o === 'advanced' || o === 'history') opsOf(p.tenant, p.cell).push('X', packed[i]!);
          if (o === 'advanced') {
            moves.push(prev ? { now: livePosition(p), prev } : { now: livePosition(p) });
            prev = { lat: p.lat, lon: p.lon };
            last = p;
          }
        });
        if (last) {
          opsOf(last.tenant, last.cell).push('A', last.id, last.lon, last.lat, last.rx);
          if (prevCell !== '' && prevCell !== last.cell) opsOf(last.tenant, prevCell).push('R', last.id);
        }
      }
      if (cellOps.size > 0) {
        const now = Date.now();
        const pipe2 = scriptPipeline(redis);
        const active: (string | number)[] = [];
        for (const c of cellOps.values()) {
          const ck = keys.cell(c.tenant, c.cell);
          pipe2.cellWrite(ck.geo, ck.seen, ck.stream, opts.streamMaxLen, STREAM_FIELD, ...c.ops);
          active.push(now, cellMember(c.tenant, c.cell));
        }
        pipe2.zadd(keys.activeCells, ...active);
        const r2 = await pipe2.exec();
        const failed = r2?.find(([err]) => err);
        if (failed) throw failed[0];
      }
      return { outcomes, moves };
    },
  };
}
