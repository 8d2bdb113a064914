# PostGIS 3.3 on PostgreSQL 15, plus pg_partman for time partitions.
FROM postgis/postgis:15-3.3
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15-partman && rm -rf /var/lib/apt/lists/*
