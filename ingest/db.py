"""Opening the writer's DuckDB file, with clear errors for the usual mistakes."""

from __future__ import annotations

from pathlib import Path

import duckdb
from userstats.shared import apply

SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseError(Exception):
    """The database file cannot be used; the message says why and what to do."""


def open_writer(path: Path, threads: int = 2) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        with path.open("rb") as f:
            if f.read(16) == SQLITE_MAGIC:
                raise DatabaseError(
                    f"{path} is a SQLite file (a kryten-userstats 0.7.1 database?). userstats "
                    "keeps its tables in DuckDB: set database.path (or USERSTATS_DB_PATH) to a "
                    "new file, e.g. data/userstats.duckdb."
                )
    try:
        con = duckdb.connect(str(path), config={"threads": threads})
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseError(
                f"{path} is locked by another process (is another ingest running?): {exc}"
            ) from exc
        raise DatabaseError(f"cannot open {path}: {exc}") from exc
    apply.create_schema(con)
    return con
