import type { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';
import type { LiveEvents, LivePosition } from '../protocol/live.js';
import { parseCellMember, type Keys } from '../store/redis/keys.js';
import { scriptPipeline } from '../store/redis/scripts/index.js';
import { ingestMetrics } from '../ingest/metrics.js';

export interface SweeperOptions {
  entityTtlSeconds: number;
  intervalMs: number;
  /** Cells visited per tick (bounded work); a cursor walks through the active cells. */
  maxCells: number;
  /** Members removed per cell per tick. */
  batch: number;
}

export interface Sweeper {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One tick now (tests); resolves with the removed entities. */
  sweepOnce(now?: number): Promise<LivePosition[]>;
}

/**
 * Removes entities silent longer than the TTL from the cells' GEO and last-seen sets. Each
 * cell is swept by one atomic script (cell-sweep-2.lua), so any number of gateways may sweep
 * at once and each removal is reported (LiveEvents.expired) by exactly one of them.
 * Queries never depend on the sweeper: they filter by last-seen themselves.
 */
export function createSweeper(redis: Redis, keys: Keys, opts: SweeperOptions, onExpired: LiveEvents['expired'] | undefined, log: Logger): Sweeper {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let cursor = 0;
  const ttlMs = opts.entityTtlSeconds * 1000;
  // A cell whose last ping is older than TTL + horizon was swept empty already (if any gateway ran).
  const horizonMs = Math.max(10 * opts.intervalMs, 60_000);
  /**
   * How far this sweeper has swept the cells that went silent: every cell with a last ping before
   * `silentScore`, and the first `silentSkip` of those at exactly `silentScore` (members of equal
   * score are in name order; one batch gives many cells the same time).
   */
  let silentScore = -Infinity;
  let silentSkip = 0;
  const silentShare = Math.max(1, Math.floor(opts.maxCells / 2));

  /**
   * The cells to sweep this tick. First those that went silent (every entity stale: their last
   * ping is older than the TTL), oldest first, each once: such a cell leaves the sweep window
   * `horizon` after it went silent, and with many active cells the cursor's walk through all
   * of them may not come round in time (its entities would never be reported as gone). Then
   * the walk, for stale entities of cells that still have live ones.
   */
  async function cellsToSweep(now: number): Promise<string[]> {
    const floor = now - ttlMs - horizonMs;
    const silentTop = now - ttlMs;
    const from = Math.max(floor, silentScore);
    const skip = from === silentScore ? silentSkip : 0;
    const silent = from <= silentTop
      ? await redis.zrangebyscore(keys.activeCells, from, silentTop, 'WITHSCORES', 'LIMIT', skip, silentShare)
      : [];
    const n = silent.length / 2;
    if (n > 0) {
      const last = Number(silent[silent.length - 1]);
      let same = 0;
      for (let i = silent.length - 1; i > 0 && Number(silent[i]) === last; i -= 2) same++;
      silentSkip = last === from ? skip + n : same;
      silentScore = last;
    }
    if (n < silentShare && silentScore < silentTop) {
      // Everything up to silentTop is swept; cells reaching it later have later last pings.
      silentScore = silentTop;
      silentSkip = 0;
    }
    const walk = await redis.zrangebyscore(keys.activeCells, floor, '+inf', 'LIMIT', cursor, opts.maxCells - n);
    cursor = walk.length < opts.maxCells - n ? 0 : cursor + walk.length;
    const out = new Set<string>(walk);
    for (let i = 0; i < silent.length; i += 2) out.add(silent[i]!);
    return [...out];
  }

  async function sweepOnce(now = Date.now()): Promise<LivePosition[]> {
    const members = await cellsToSweep(now);
    if (members.length === 0) return [];
    const cells = members.map(parseCellMember);
    const pipe = scriptPipeline(redis);
    for (const c of cells) {
      const ck = keys.cell(c.tenant, c.cell);
      pipe.cellSweep(ck.geo, ck.seen, now - ttlMs, opts.batch);
    }
    const res = await pipe.exec();
    const gone: LivePosition[] = [];
    res?.forEach(([err, rows], i) => {
      if (err) { log.warn({ err }, 'sweep of a cell failed'); return; }
      const r = rows as string[];
      const tenant = cells[i]!.tenant;
      for (let j = 0; j + 3 < r.length; j += 4) {
        gone.push({ tenant, id: r[j]!, lon: Number(r[j + 1]), lat: Number(r[j + 2]), ts: Number(r[j + 3]) });
      }
    });
    if (gone.length > 0) {
      ingestMetrics.swept.inc(gone.length);
      log.debug({ count: gone.length }, 'swept stale entities');
      try { onExpired?.(gone); } catch (err) { log.error({ err }, 'expired listener failed'); }
    }
    return gone;
  }

  const tick = (): void => {
    running = sweepOnce().catch((err: unknown) => log.warn({ err }, 'sweep failed')).finally(() => {
      running = undefined;
      if (timer) timer = setTimeout(tick, opts.intervalMs);
    });
  };

  return {
    async start() {
      timer = setTimeout(tick, opts.intervalMs);
    },
    async stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
    sweepOnce,
  };
}
