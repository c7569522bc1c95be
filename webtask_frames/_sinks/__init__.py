"""The sinks layer: Arrow tables landed in Parquet files and DuckDB tables, atomically."""
