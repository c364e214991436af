"""The medallion's work done by DuckDB on local files, for the benchmark's comparison row.

Bronze: the CSV as text plus lineage columns, to zstd parquet. Silver: typed (null markers
as missing, the timestamp as an instant), the flights spec's quality rules, duplicates of
the primary key dropped, to zstd parquet partitioned by year and month. Gold: per carrier
and month, count, cancelled, mean and p90 of both delays. No object store, no Delta log, no
orchestration: the floor a single-process engine sets for the same work.

Prints one JSON line: {"seconds": …, "silver_rows": …, "gold_rows": …}.
Usage: python medallion.py <flights.csv> <scratch dir>
"""

import json
import os
import shutil
import sys
import time

import duckdb

source, scratch = sys.argv[1], sys.argv[2]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
started = time.perf_counter()
con = duckdb.connect()
con.execute(
    f"""copy (select *, now()::varchar as _ingested_at, '{source}' as _source_file
        from read_csv('{source}', all_varchar = true))
        to '{scratch}/bronze.parquet' (format parquet, compression zstd)"""
)


def num(column, kind):
    return f"try_cast(nullif({column}, 'NA') as {kind}) as {column}"


ints = ["year", "month", "day", "dep_time", "sched_dep_time", "arr_time",
        "sched_arr_time", "flight", "hour", "minute"]
floats = ["dep_delay", "arr_delay", "air_time", "distance"]
typed = ", ".join(
    [num(c, "integer") for c in ints]
    + [num(c, "double") for c in floats]
    + ["carrier", "nullif(tailnum, 'NA') as tailnum", "origin", "dest",
       "try_cast(time_hour as timestamptz) as time_hour",
       "_ingested_at::timestamptz as _ingested_at", "_source_file"]
)
con.execute(
    f"""create table silver as select distinct on
          (year, month, day, carrier, flight, origin, sched_dep_time) *
        from (select {typed} from read_parquet('{scratch}/bronze.parquet'))
        where origin in ('EWR', 'JFK', 'LGA') and distance between 1 and 10000
          and month between 1 and 12
          and not (dep_time is not null and arr_delay is null)"""
)
con.execute(
    f"""copy silver to '{scratch}/silver'
        (format parquet, compression zstd, partition_by (year, month))"""
)
con.execute(
    f"""copy (select carrier, year, month, count(*) as flights,
          count(*) - count(dep_time) as cancelled,
          avg(dep_delay) as mean_dep_delay, quantile_cont(dep_delay, 0.9) as p90_dep_delay,
          avg(arr_delay) as mean_arr_delay, quantile_cont(arr_delay, 0.9) as p90_arr_delay
        from read_parquet('{scratch}/silver/**/*.parquet', hive_partitioning = true)
        group by all) to '{scratch}/gold.parquet' (format parquet)"""
)
seconds = time.perf_counter() - started
silver_rows = con.execute("select count(*) from silver").fetchone()[0]
gold_rows = con.execute(
    f"select count(*) from read_parquet('{scratch}/gold.parquet')"
).fetchone()[0]
print(json.dumps({"seconds": seconds, "silver_rows": silver_rows, "gold_rows": gold_rows}))
