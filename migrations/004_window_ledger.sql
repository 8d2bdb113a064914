-- Window mode's exactly-once record moves from ping_log (one row, one unique b-tree insert per
-- ping) to the window itself: track_windows keeps the keys (ts, seq) of the pings it counted,
-- as two parallel arrays (ts as ms after the window start; seq = -1 when the ping had none).
-- A window holds at most a few hundred pings, so this is a few KB per row at worst, rewritten
-- once per flush that touches the window. Retention and partitions: those of track_windows.
-- Raw mode keeps ping_log for its conflicts (positions is its record).
ALTER TABLE track_windows ADD COLUMN IF NOT EXISTS key_off integer[] NOT NULL DEFAULT '{}';
ALTER TABLE track_windows ADD COLUMN IF NOT EXISTS key_seq bigint[] NOT NULL DEFAULT '{}';

-- Windows written before this migration: their keys are in ping_log (window mode logged every
-- ping there). Without them a redelivered ping of such a window would be counted again.
UPDATE track_windows t SET key_off = k.off, key_seq = k.seq
FROM (
  SELECT tenant, entity_id, win,
         array_agg(((extract(epoch FROM ts) - extract(epoch FROM win)) * 1000)::integer ORDER BY ts, seq) AS off,
         array_agg(seq ORDER BY ts, seq) AS seq
  FROM (SELECT tenant, entity_id, ts, seq, to_timestamp(floor(extract(epoch FROM ts) / 10) * 10) AS win FROM ping_log) p
  GROUP BY tenant, entity_id, win
) k
WHERE t.tenant = k.tenant AND t.entity_id = k.entity_id AND t.win = k.win;

-- Concatenates arrays (the keys of a window's per-cell groups).
CREATE OR REPLACE AGGREGATE gf_array_cat(anycompatiblearray) (SFUNC = array_cat, STYPE = anycompatiblearray, INITCOND = '{}');
