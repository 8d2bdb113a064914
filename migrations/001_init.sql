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

-- pg_partman 4.x wants p_type 'native' and a named interval ('daily'); 5.x removed both (types
-- 'range'/'list', intervals as interval values: '1 day'). The installed version picks the call;
-- the partitions are the same daily ranges either way (docs/persistence.md, Partitions).
DO $$
DECLARE
  v5 boolean := (SELECT split_part(extversion, '.', 1)::int >= 5 FROM pg_extension WHERE extname = 'pg_partman');
BEGIN
  PERFORM partman.create_parent(
    p_parent_table := 'public.positions',
    p_control := 'ts',
    p_type := CASE WHEN v5 THEN 'range' ELSE 'native' END,
    p_interval := CASE WHEN v5 THEN '1 day' ELSE 'daily' END,
    p_premake := 7,
    p_start_partition := to_char(now() - interval '1 day', 'YYYY-MM-DD')
  );
END
$$;
