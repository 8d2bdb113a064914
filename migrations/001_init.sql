-- Foundation schema: PostGIS, pg_partman, and the time-partitioned track table.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

-- Entity tracks, one row per persisted fix, RANGE-partitioned by day on ts (pg_partman).
CREATE TABLE positions (
  tenant      text        NOT NULL,
  entity_id   text        NOT NULL,
  ts          timestamptz NOT NULL,
  geom        geometry(Point, 4326) NOT NULL,
  speed       real,
  heading     real,
  accuracy    real,
  kind        text,
  status      text,
  cell        text        NOT NULL,
  ping_count  integer     NOT NULL DEFAULT 1,
  mean_speed  real,
  PRIMARY KEY (tenant, entity_id, ts)
) PARTITION BY RANGE (ts);

CREATE INDEX positions_geom_gist ON positions USING gist (geom);
CREATE INDEX positions_ts_brin ON positions USING brin (ts);

SELECT partman.create_parent(
  p_parent_table := 'public.positions',
  p_control := 'ts',
  p_type := 'native',
  p_interval := 'daily',
  p_premake := 7,
  p_start_partition := to_char(now() - interval '1 day', 'YYYY-MM-DD')
);
