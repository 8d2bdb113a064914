-- Window mode: the upsert of a window's state also records the latest fix it had BEFORE this
-- update (NULL for a new window), atomically with the update. The worker then touches
-- positions by primary key only: delete the row of a superseded latest fix, or refresh the
-- counts of an unchanged one (no range scans of positions).
ALTER TABLE track_windows ADD COLUMN IF NOT EXISTS prev_ts timestamptz;
ALTER TABLE track_windows ADD COLUMN IF NOT EXISTS prev_seq bigint;
