import type { Redis } from 'ioredis';
import type { AcceptedPing } from '../../protocol/ping.js';
import type { LiveMove, LivePosition } from '../../protocol/live.js';
import { cellMember, entityBucket, type Keys } from './keys.js';
import { encodeAccepted, STREAM_FIELD } from './codec.js';
import { scriptPipeline } from './scripts/index.js';
import { BatchBlob } from './batch-blob.js';

export interface LiveWriterOptions {
  entityTtlSeconds: number;
  streamMaxLen: number;
  /** Implied speed above this (m/s) flags a ping as an implausible jump. */
  maxSpeedMps: number;
  /** GPS noise allowance (metres) subtracted from the jump distance before the speed check. */
  jumpSlackMeters: number;
  /**
   * true: every script call touches keys of one hash tag (one call per entity bucket, then one
   * per cell: two round trips), as Redis Cluster requires. false (default): one script call per
   * batch (and tenant) decides the entities and writes the cells, on a single Redis: one round
   * trip, less gateway and Redis CPU per single-ping frame (docs/ingest.md).
   */
  clusterSafe?: boolean;
  /**
   * true: entity state writes go to the AOF as well as to replicas. false (default): replicas
   * only; after a restart from the AOF each entity's state is rebuilt by its next ping
   * (docs/ingest.md, "Durability").
   */
  entityStateInAof?: boolean;
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
  /** One per entity whose live state advanced: its latest state, with its position before the batch when known. */
  moves: LiveMove[];
}

/** Writes accepted pings to Redis: per-entity state, then per-cell GEO/seen/stream. */
export interface LiveWriter {
  /** Resolves once Redis confirmed every write of the batch (one round trip; two cluster-safe). */
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

/** A ping's strings for the scripts (ASCII: numbers, ids, cells). */
const num = (v: number): string => String(v);

export function createLiveWriter(redis: Redis, keys: Keys, opts: LiveWriterOptions): LiveWriter {
  const ttlMs = opts.entityTtlSeconds * 1000;
  const blob = new BatchBlob();
  const perTag = opts.clusterSafe === true;
  const entityRepl = opts.entityStateInAof === true ? 'aof' : 'replicas';
  return {
    async write(pings) {
      if (pings.length === 0) return { outcomes: [], moves: [] };
      // 1. Entity step: one script call decides every ping of its entities: per entity bucket
      //    (hash tag) when cluster-safe, else per tenant (ids are unique within a tenant), and
      //    then (not cluster-safe) writes their cells in the same call.
      /** Pings of each script call's group (bucket or tenant), by entity id: indices into the batch. */
      const groups = new Map<string, Map<string, number[]>>();
      for (let i = 0; i < pings.length; i++) {
        const p = pings[i]!;
        const g = perTag ? `${p.tenant}\u0000${entityBucket(p.id)}` : p.tenant;
        let ents = groups.get(g);
        if (!ents) groups.set(g, (ents = new Map()));
        const list = ents.get(p.id);
        if (list) list.push(i); else ents.set(p.id, [i]);
      }
      const packed = new Array<Buffer>(pings.length);
      for (let i = 0; i < pings.length; i++) packed[i] = encodeAccepted(pings[i]!);
      const pipe1 = scriptPipeline(redis);
      const order: number[][] = [];
      const now = Date.now();
      for (const [group, ents] of groups) {
        let ks: string[] = [];
        blob.reset();
        // Not cluster-safe, a group is a tenant: its cell keys for the cell step in the same call.
        const cellStep = perTag ? [] : cellStepArgs(keys, group, now, opts.streamMaxLen);
        const call = (): void => {
          pipe1.entityAdvance(ks.length, ...ks, ttlMs, opts.maxSpeedMps, opts.jumpSlackMeters, blob.take(), entityRepl, ...cellStep);
          ks = [];
        };
        for (const idx of ents.values()) {
          const first = pings[idx[0]!]!;
          ks.push(keys.entity(first.tenant, first.id));
          blob.u16(idx.length).str8(first.id);
          for (const i of idx) {
            const p = pings[i]!;
            blob.str8(num(p.ts)).str8(p.seq === undefined ? '' : num(p.seq)).str8(num(p.lat)).str8(num(p.lon))
              .str8(p.cell).str8(num(p.rx)).bytes16(packed[i]!);
          }
          order.push(idx);
          if (ks.length === MAX_KEYS_PER_CALL) call();
        }
        if (ks.length > 0) call();
      }
      const r1 = await pipe1.exec();
      const rows: string[] = [];
      for (const [err, res] of r1 ?? []) {
        if (err) throw err;
        for (const row of String(res).split(';')) rows.push(row);
      }
      const outcomes: Outcome[] = new Array<Outcome>(pings.length);
      const moves: LiveMove[] = [];
      // 2. Cell step, cluster-safe only (the single call did it already): one call per cell,
      //    history in ping order, then leave the old cell, then live state.
      const cellOps = new Map<string, CellOps>();
      const opsOf = (tenant: string, cell: string): CellOps => {
        const k = cellMember(tenant, cell);
        let c = cellOps.get(k);
        if (!c) cellOps.set(k, (c = { tenant, cell, history: [], live: [], left: [] }));
        return c;
      };
      for (let e = 0; e < order.length; e++) {
        const idx = order[e]!;
        const [prevCell = '', prevLat = '', prevLon = '', decided = ''] = rows[e]!.split(',');
        let last: AcceptedPing | undefined;
        for (let j = 0; j < idx.length; j++) {
          const i = idx[j]!;
          const o = OUTCOME[decided.charCodeAt(j) - 48] ?? 'implausible';
          outcomes[i] = o;
          const p = pings[i]!;
          if (perTag && (o === 'advanced' || o === 'history')) opsOf(p.tenant, p.cell).history.push(i);
          if (o === 'advanced') last = p;
        }
        if (last) {
          // One move per entity and batch: its latest state, from where it was before the batch.
          const pos = livePosition(last);
          moves.push(prevLat !== '' ? { now: pos, prev: { lat: Number(prevLat), lon: Number(prevLon) }, rx: last.rx } : { now: pos, rx: last.rx });
          if (perTag) {
            opsOf(last.tenant, last.cell).live.push(last);
            if (prevCell !== '' && prevCell !== last.cell) opsOf(last.tenant, prevCell).left.push(last.id);
          }
        }
      }
      if (cellOps.size > 0) {
        const pipe2 = scriptPipeline(redis);
        const active: (string | number)[] = [];
        for (const c of cellOps.values()) {
          const ck = keys.cell(c.tenant, c.cell);
          blob.reset();
          for (const i of c.history) blob.u8(OP_X).bytes16(packed[i]!);
          for (const id of c.left) blob.u8(OP_R).str8(id);
          for (const p of c.live) blob.u8(OP_A).str8(p.id).str8(num(p.lon)).str8(num(p.lat)).str8(num(p.rx));
          pipe2.cellWrite(3, ck.geo, ck.seen, ck.stream, opts.streamMaxLen, STREAM_FIELD, blob.take());
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

/**
 * The single-call form's cell-step arguments of entity-advance-n.lua for one tenant: key heads
 * and tails cut from the key builder's own names, so the script builds the same keys.
 */
function cellStepArgs(keys: Keys, tenant: string, now: number, streamMaxLen: number): (string | number)[] {
  const MARK = '\u0001';
  const ck = keys.cell(tenant, MARK);
  const head = ck.geo.slice(0, ck.geo.indexOf(MARK));
  const tail = (key: string): string => {
    if (!key.startsWith(head + MARK)) throw new Error(`cell keys of ${tenant} do not share a head: ${key}`);
    return key.slice(head.length + MARK.length);
  };
  const member = cellMember(tenant, MARK);
  return [head, tail(ck.geo), tail(ck.seen), tail(ck.stream), keys.activeCells, member.slice(0, member.indexOf(MARK)), now, streamMaxLen, STREAM_FIELD];
}

/** What one batch does to one cell: stream these pings, add these entities, remove those ids. */
interface CellOps { tenant: string; cell: string; history: number[]; live: AcceptedPing[]; left: string[] }

/** Keys per script call at most (a batch can hold tens of thousands of pings): bounded arguments and script run time. */
const MAX_KEYS_PER_CALL = 1500;

const OP_X = 0x58;
const OP_A = 0x41;
const OP_R = 0x52;
