"""The writer's DuckDB file: one owner opens it (with clear errors for the usual mistakes),
hands out its connection, notices when someone replaces it, and swaps a rebuilt file in."""

from __future__ import annotations

from pathlib import Path

import duckdb
from userstats.shared import apply

SQLITE_MAGIC = b"SQLite format 3\x00"


def shadow_path(live: Path) -> Path:
    """Where a rebuild writes: beside the live file, so the final rename is atomic."""
    return live.with_name(live.name + ".rebuild")


def replace_database(shadow: Path, live: Path) -> None:
    """Atomically rename the shadow over the live file. Nobody may hold the live file open.

    The live file's WAL must go first: DuckDB would replay it into the new file.
    """
    Path(f"{live}.wal").unlink(missing_ok=True)
    Path(f"{shadow}.wal").unlink(missing_ok=True)
    shadow.replace(live)


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


class WriterDatabase:
    """Ingest's database across epochs: the file, its open connection, and `swap()` between
    epochs (when nothing else holds the file open) to put a rebuilt file in its place."""

    def __init__(self, live: Path, threads: int) -> None:
        self.live = live
        self._threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened

    @property
    def is_open(self) -> bool:
        return self._con is not None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection of the current epoch."""
        assert self._con is not None, "the database is not open"
        return self._con

    def open(self) -> duckdb.DuckDBPyConnection:
        self._con = open_writer(self.live, self._threads)
        self._file = _file_id(self.live)
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con, self._file = None, None

    def swap(self, shadow: Path) -> apply.Checkpoint:
        """Close the file, rename the rebuilt `shadow` over it and open that; its checkpoint.

        On a failure the database may be left closed: the caller reopens it (`is_open`)."""
        self.close()
        replace_database(shadow, self.live)
        self.open()
        return apply.read_checkpoint(self.con)

    def replaced_problem(self) -> str | None:
        """Someone replaced or removed the file ingest writes to (ingest would go on
        writing to the old, unlinked one and lose it all at the next start)."""
        if self._file is not None and _file_id(self.live) != self._file:
            return f"the database file {self.live} was replaced or removed while open; restart ingest"
        return None


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino
