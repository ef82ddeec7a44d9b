"""The import's summary: rows read, imported and skipped (with reasons) per table, events appended."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TableReport:
    read: int = 0
    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    path: Path
    tables: dict[str, TableReport] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0  # dropped by the stream's dedupe window: published moments ago
    first_seq: int = 0
    last_seq: int = 0
    trigger_phrases: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(t.read for t in self.tables.values())

    def format(self, dry_run: bool) -> str:
        verb = "would import" if dry_run else "imported"
        lines = [f"{self.path}: {verb}", f"  {'table':<22} {'read':>9} {'imported':>9} {'skipped':>8}"]
        for name, t in self.tables.items():
            skipped = sum(t.skipped.values())
            lines.append(f"  {name:<22} {t.read:>9,} {t.imported:>9,} {skipped:>8,}")
            for reason, n in sorted(t.skipped.items()):
                lines.append(f"      {n:,} skipped: {reason}")
        for name in self.missing:
            lines.append(f"  {name:<22} not in this file (older kryten-userstats); nothing to import")
        if self.trigger_phrases:
            lines.append(f"  trigger phrases in the file: {', '.join(self.trigger_phrases)}")
        if not dry_run:
            span = f"seq {self.first_seq}..{self.last_seq}" if self.events else "nothing new"
            lines.append(f"  {self.events} journal event(s) appended ({span})")
            if self.duplicates:
                lines.append(
                    f"  {self.duplicates} event(s) were already in the stream (same rows published "
                    "within its 2-minute dedupe window) and were not stored again"
                )
        return "\n".join(lines)
