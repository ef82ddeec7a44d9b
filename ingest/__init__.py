"""userstats ingest: the only writer. Stream -> pure projection -> DuckDB, then snapshots."""
