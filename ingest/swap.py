"""Putting a rebuilt database file in place of the live one."""

from __future__ import annotations

from pathlib import Path


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
