-- Persistence workers (issue 4): ping-level dedup, per-entity window state, per-cell 10 s
-- aggregates. Every table is RANGE-partitioned by day with pg_partman; the worker's
-- maintenance job (workers/partitions.ts) creates partitions ahead and drops expired ones.

-- positions: the sequence number of the fix the row holds (NULL when the ping had none);
-- used to pick the same row whatever the arrival order.
ALTER TABLE positions ADD COLUMN IF NOT EXISTS seq bigint;

-- Every deduplicated ping ever persisted, by its identity (seq = -1 when the ping had none).
-- A ping inserted here for the first time is "fresh": only fresh pings change counters, so
-- redelivery (retries, XAUTOCLAIM, two gateways) never counts twice.
CREATE TABLE ping_log (
  tenant    text        NOT NULL,
  entity_id text        NOT NULL,
  ts        timestamptz NOT NULL,
  seq       bigint      NOT NULL,
  PRIMARY KEY (tenant, entity_id, ts, seq)
) PARTITION BY RANGE (ts);

-- Window mode: running state of one entity in one 10 s window (commutative counters: sums,
-- counts, the greatest (ts, seq)). Speed sums are numeric so they are exact in any order.
CREATE TABLE track_windows (
  tenant     text        NOT NULL,
  entity_id  text        NOT NULL,
  win        timestamptz NOT NULL,
  ping_count integer     NOT NULL,
  speed_sum  numeric     NOT NULL,
  speed_n    integer     NOT NULL,
  last_ts    timestamptz NOT NULL,
  last_seq   bigint      NOT NULL,
  PRIMARY KEY (tenant, entity_id, win)
) PARTITION BY RANGE (win);

-- Per-cell aggregates for each 10 s window (ingest cell z/x/y).
CREATE TABLE cell_stats (
  tenant       text        NOT NULL,
  cell         text        NOT NULL,
  cz           smallint    NOT NULL,
  cx           integer     NOT NULL,
  cy           integer     NOT NULL,
  win          timestamptz NOT NULL,
  ping_count   integer     NOT NULL,
  entity_count integer     NOT NULL,
  speed_sum    numeric     NOT NULL,
  speed_n      integer     NOT NULL,
  speed_max    real,
  lon_sum      numeric     NOT NULL,
  lat_sum      numeric     NOT NULL,
  min_lon float8 NOT NULL, min_lat float8 NOT NULL, max_lon float8 NOT NULL, max_lat float8 NOT NULL,
  centroid     geometry(Point, 4326) GENERATED ALWAYS AS
                 (ST_SetSRID(ST_MakePoint((lon_sum / ping_count)::float8, (lat_sum / ping_count)::float8), 4326)) STORED,
  extent       geometry(Geometry, 4326) GENERATED ALWAYS AS (ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat, 4326)) STORED,
  PRIMARY KEY (tenant, cell, win)
) PARTITION BY RANGE (win);

-- Which entities were already counted in a cell window (exact distinct counts across flushes).
CREATE TABLE cell_window_entities (
  tenant    text        NOT NULL,
  cell      text        NOT NULL,
  win       timestamptz NOT NULL,
  entity_id text        NOT NULL,
  PRIMARY KEY (tenant, cell, win, entity_id)
) PARTITION BY RANGE (win);

CREATE INDEX cell_stats_tile ON cell_stats (tenant, cz, cx, cy, win);
CREATE INDEX cell_stats_extent_gist ON cell_stats USING gist (extent);
CREATE INDEX cell_stats_win_brin ON cell_stats USING brin (win);
CREATE INDEX ping_log_ts_brin ON ping_log USING brin (ts);
CREATE INDEX track_windows_win_brin ON track_windows USING brin (win);
CREATE INDEX cell_window_entities_win_brin ON cell_window_entities USING brin (win);

-- pg_partman 4.x: p_type 'native', interval 'daily'; 5.x: 'range', '1 day' (as in 001_init.sql).
DO $$
DECLARE
  v5 boolean := (SELECT split_part(extversion, '.', 1)::int >= 5 FROM pg_extension WHERE extname = 'pg_partman');
  t record;
BEGIN
  FOR t IN SELECT * FROM (VALUES ('public.ping_log', 'ts'), ('public.track_windows', 'win'),
                                 ('public.cell_stats', 'win'), ('public.cell_window_entities', 'win')) AS v(parent, control)
  LOOP
    PERFORM partman.create_parent(
      p_parent_table := t.parent,
      p_control := t.control,
      p_type := CASE WHEN v5 THEN 'range' ELSE 'native' END,
      p_interval := CASE WHEN v5 THEN '1 day' ELSE 'daily' END,
      p_premake := 7,
      p_start_partition := to_char(now() - interval '1 day', 'YYYY-MM-DD')
    );
  END LOOP;
END
$$;
