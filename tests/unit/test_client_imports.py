"""The typed client is light: importing it pulls in no server dependency (DuckDB, FastAPI, ...)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("duckdb", "fastapi", "uvicorn", "starlette", "prometheus_client", "jinja2", "httptools")
# the client shares the wire types with the server, never the server itself
SERVER_PACKAGES = ("userstats.query", "userstats.ingest", "userstats.sim", "userstats.launcher")


def test_importing_the_client_loads_no_server_dependency(tmp_path: Path) -> None:
    probe = "import json, sys, userstats.client; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY]
    assert heavy == [], heavy
    server = [name for name in loaded if name.startswith(SERVER_PACKAGES)]
    assert server == [], server
