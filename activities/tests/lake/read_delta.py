"""Reads the lake's Delta tables with delta-rs's Python package (an independent reader) and
prints what the Rust test asserts on, as JSON.

usage: read_delta.py <connection string> <table url or local .parquet file> [...]

A local parquet file (a bronze file the test downloaded) is read with pyarrow alone.
"""
import json
import os
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable


def storage_options(connection: str) -> dict:
    parts = dict(p.split("=", 1) for p in connection.split(";") if "=" in p)
    return {
        "account_name": parts["AccountName"],
        "account_key": parts["AccountKey"],
        "azure_storage_endpoint": parts["BlobEndpoint"].rstrip("/"),
        "allow_http": "true",
    }


def rows_of(table: DeltaTable) -> dict:
    data = table.to_pyarrow_table()
    out = {"rows": data.num_rows}
    if "_run_id" in data.column_names:
        out["run_ids"] = sorted(set(data.column("_run_id").to_pylist()))
    if "flights" in data.column_names:
        out["flights"] = pc.sum(data.column("flights")).as_py()
    if "time_hour" in data.column_names:
        out["first_time_hour"] = str(pc.min(data.column("time_hour")).as_py())
    return out


def describe(url: str, options: dict) -> dict:
    table = DeltaTable(url, storage_options=options)
    version = table.version()
    schema = json.loads(table.schema().to_json())
    history = table.history()
    out = {
        "version": version,
        "partition_columns": table.metadata().partition_columns,
        "fields": {f["name"]: [f["type"], f["nullable"]] for f in schema["fields"]},
        "operations": [h.get("operation") for h in reversed(history)],
        "current": rows_of(table),
        "versions": {},
    }
    for v in range(version + 1):
        old = DeltaTable(url, storage_options=options, version=v)
        out["versions"][str(v)] = rows_of(old)
    return out


def parquet_file(path: str) -> dict:
    data = pq.read_table(path)
    return {
        "rows": data.num_rows,
        "row_groups": pq.ParquetFile(path).num_row_groups,
        "types": sorted({str(t) for t in data.schema.types}),
        "columns": data.column_names,
        "first_row": {k: v[0] for k, v in data.slice(0, 1).to_pydict().items()},
    }


def main() -> None:
    options = storage_options(sys.argv[1])
    print(json.dumps({
        arg: parquet_file(arg) if arg.endswith(".parquet") else describe(arg, options)
        for arg in sys.argv[2:]
    }))


if __name__ == "__main__":
    main()
    # Skip the interpreter's teardown: under load, the native threads of the reader's
    # runtime were seen to abort it there ("terminate called without an active
    # exception") after the answer was printed.
    sys.stdout.flush()
    os._exit(0)
