"""kryten-robot 1.12.6, the real bridge, as a child process (installed by `make` in .venv/bridge)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

BRIDGE_PATH = Path(sys.prefix) / "bridge"


class Bridge:
    """`python -S -m kryten --config ...` with only .venv/bridge on its path (its `kryten`
    package would clash with kryten-py's in .venv), trusting the test's CA for HTTPS."""

    def __init__(self, workdir: Path, domain: str, channel: str, nats_url: str, ca: Path) -> None:
        if not (BRIDGE_PATH / "kryten" / "__main__.py").is_file():
            raise RuntimeError(f"{BRIDGE_PATH} is missing: run `make venv` (it installs kryten-robot there)")
        self.workdir = workdir
        self.config = workdir / "kryten-robot.json"
        self.config.write_text(
            json.dumps(
                {
                    "cytube": {
                        "domain": domain,
                        "channel": channel,
                        "user": "StatsBot",
                        "password": "hunter2",
                    },
                    "nats": {"servers": [nats_url]},
                    "commands": {"enabled": False},
                    "health": {"enabled": False},
                    "logging": {"base_path": str(workdir / "bridge-logs")},
                    "log_level": "INFO",
                }
            )
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("KRYTEN_", "PYTHON"))}
        self.env.update(PYTHONPATH=str(BRIDGE_PATH), SSL_CERT_FILE=str(ca), PYTHONUNBUFFERED="1")
        self.log = workdir / "bridge.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as logf:
            logf.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "kryten", "--config", str(self.config)],
                env=self.env,
                cwd=self.workdir,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]
