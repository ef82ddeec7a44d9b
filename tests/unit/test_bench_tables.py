"""`python -m bench.tables` renders every result file of the benchmarks, with no empty column."""

from __future__ import annotations

import json

from bench.common import RESULTS
from bench.run_all import BENCHMARKS
from bench.tables import TABLES, table, value


def test_every_result_file_has_a_table_and_every_column_a_value() -> None:
    names = {p.stem for p in RESULTS.glob("*.json")}
    # every benchmark's results (bench.freshness writes leader_change.json too) have a table
    assert names == set(TABLES)
    assert {b.removeprefix("bench.") for b in BENCHMARKS} <= names
    for name, (columns, keep) in TABLES.items():
        rows = [r for r in json.loads((RESULTS / f"{name}.json").read_text())["rows"] if keep(r)]
        assert rows, name
        for head, key in columns:  # a renamed JSON key would leave a column blank
            assert any(value(r, key) not in (None, "") for r in rows), (name, head)
        lines = table(name).splitlines()
        assert len(lines) == len(rows) + 2
        assert all(line.count("|") == len(columns) + 1 for line in lines), name
