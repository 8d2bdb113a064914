/** What a persistence write reports, shared by both modes' writers. */
export type PersistMode = 'window' | 'raw';

export interface WriteResult {
  /** Pings seen for the first time (not already persisted by an earlier flush or worker). */
  fresh: number;
  /** positions rows inserted or updated. */
  positions: number;
  /** cell_stats rows inserted or updated. */
  cellStats: number;
  /**
   * Milliseconds per step, for logs and tuning. Window mode: copy, agg, new, lock, ledger (only
   * when keys are checked one by one), update, positions, cells; raw mode: fast (the direct COPY
   * into positions), cells; or, when the batch cannot take the fast path or its COPY met an
   * existing key: [fast (the attempt),] copy, raw, conflicts, cells.
   */
  steps: Record<string, number>;
}

/** Records the milliseconds since the previous lap under `name` (WriteResult.steps). */
export type Lap = (name: string) => void;
