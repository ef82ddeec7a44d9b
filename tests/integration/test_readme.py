"""The README's commands, run as written: a README edit that breaks one breaks this test.

The shell and Python blocks of the Quick start (and its stop/publish/restart walk-through),
the nats CLI lines, the client and nats-py snippets, the two examples and the rebuild and
dead-letter commands are read from README.md itself and run against `make demo`, in a
workspace that looks like a checkout (its `.venv`, Makefile and examples are this one's).
Everything runs in a private network namespace, so the README's fixed ports (4222, 8222,
28282, 28283) are free whatever else runs on this machine, and nothing is rewritten in the
commands except `/tmp/` (which is shared by everyone here) into the workspace. Each
command must exit 0 and print a sensible, non-empty answer; a command without a check
here fails the test, so a new README command gets one.

The nats CLI is not installed here: a stand-in `nats` on PATH sends `nats request SUBJECT
BODY` with nats-py to the same server, so the subjects and bodies the README shows are
what is checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
LONG_RUNNING = re.compile(r"^(NATS_URL=\S+ )?make (demo|run)\b|/nats-server ")


# --- reading the README -------------------------------------------------------------------


def section(text: str, heading: str) -> str:
    """The body of the section with this heading, up to the next heading of its level or
    above (lines in code blocks, such as `# terminal 1`, are not headings)."""
    lines, fenced, level, out = text.splitlines(keepends=True), False, 0, []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#+) (.*?)\s*$", line)
        if level and m and len(m.group(1)) <= level:
            break
        if level:
            out.append(line)
        elif m and m.group(2) == heading:
            level = len(m.group(1))
    assert level, f"README has no section {heading!r}"
    return "".join(out)


def blocks(body: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", body, re.M | re.S)


def commands(block: str) -> list[str]:
    out = []
    for raw in block.splitlines():
        line = re.split(r"\s{2,}# ", raw)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def inline(body: str, pattern: str) -> list[str]:
    """Inline code in the prose (code blocks left out) that matches `pattern`."""
    prose = re.sub(r"^```.*?^```", "", body, flags=re.M | re.S)
    return [c for c in re.findall(r"`([^`]+)`", prose) if re.search(pattern, c)]


# --- checks of the answers ----------------------------------------------------------------


def reply(out: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(out)
    assert body["success"] is True, body
    return body


def data(out: str) -> Any:
    return reply(out)["data"]


def system_stats(out: str) -> None:
    d = data(out)
    assert d["total_messages"] > 0 and d["events_processed"] > 0 and d["total_users"] > 0, d


def kudos_top5(out: str) -> None:
    rows = data(out)["leaderboard"]
    assert 1 <= len(rows) <= 5 and all(r["count"] > 0 for r in rows), rows


def user_in_channel(out: str) -> None:
    d = data(out)
    assert d["username"] == "420GUser7" and d["messages"] > 0, d


def user_anywhere(out: str) -> None:
    d = data(out)
    assert sum(r["count"] for r in d["all_messages"]) > 0, d


def population(out: str) -> None:
    d = data(out)
    assert d["current"]["connected_count"] > 0 and d["history"], d


def anime_top3(out: str) -> None:
    body = reply(out)
    assert len(body["data"]["top_users"]) == 3 and "note" not in body, body


def emotes_top5(out: str) -> None:
    rows = data(out)["leaderboard"]
    assert 1 <= len(rows) <= 5 and rows[0]["count"] > 0, rows


def metrics_totals(out: str) -> None:
    values = dict(line.rsplit(" ", 1) for line in out.splitlines())
    assert (
        float(values["userstats_total_messages"]) > 0 and float(values["userstats_total_users_tracked"]) > 0
    )


def ingest_health(out: str) -> None:
    h = json.loads(out)
    assert h["status"] == "healthy" and h["checkpoint_seq"] > 0, h


def client_script(out: str) -> None:
    rows = eval(out.strip(), {})  # the snippet prints a list of (username, count) tuples
    assert isinstance(rows, list) and rows and all(n > 0 for _, n in rows), out


def nats_py_script(out: str) -> None:
    body = eval(out.strip(), {"true": True, "false": False, "null": None})  # it prints a dict
    assert body["success"] is True and body["data"]["top_users"], out


def query_example(out: str) -> None:
    assert re.search(r"^system: [1-9]\d* users, [1-9]\d* messages", out, re.M), out
    assert re.search(r"top users of 420Grindhouse:\n  \S+ +[1-9]\d* messages", out), out
    assert re.search(r"^population: high [1-9]\d* at ", out, re.M), out
    assert "messages per hour: none" not in out and "kudos leaderboard: empty" not in out, out
    assert "bad input gets a clear error: 'username required'" in out, out


def metrics_example(out: str) -> None:
    assert re.search(r"^userstats_total_messages +[1-9]", out, re.M), out


def swapped(out: str) -> None:
    assert re.search(r"^rebuilt [\d,]+ events to seq \d+ .* 0 dead letter", out, re.M), out
    assert re.search(r"^swapped into the running ingest at seq [1-9]\d*", out, re.M), out


def rebuilt_to_file(out: str) -> None:
    m = re.search(r"tables as of seq [1-9]\d* written to (\S+) \(the live database is unchanged\)", out)
    assert m and Path(m.group(1)).stat().st_size > 0, out


def dead_letters(out: str) -> None:
    d = json.loads(out)
    assert d["total"] == len(d["rows"]) == 0, d  # the simulator publishes no poison


def published(out: str) -> None:
    assert out == "", out  # it logs to stderr; nothing on stdout


CHECKS: list[tuple[str, Callable[[str], None]]] = [
    (r"^\.venv/bin/userstats-ask system\.stats$", system_stats),
    (r"^\.venv/bin/userstats-ask leaderboard\.kudos limit=5$", kudos_top5),
    (r"^\.venv/bin/userstats-ask user\.stats username=420GUser7 channel=420Grindhouse$", user_in_channel),
    (r"^\.venv/bin/userstats-ask channel\.population channel=420Grindhouse hours=1$", population),
    (r"^\.venv/bin/userstats-ask channel\.top_users channel=AnimeClub domain=cy\.tube limit=3$", anime_top3),
    (r"^\.venv/bin/userstats-ask --subject cytube\.query\.userstats\.cytu\.be\.user\.stats", user_anywhere),
    (r"^curl -s http://127\.0\.0\.1:28282/metrics \| grep '\^userstats_total'$", metrics_totals),
    (r"^curl -s http://127\.0\.0\.1:28283/health$", ingest_health),
    (r"""^nats request kryten\.userstats\.command '\{"command": "system\.stats"\}'$""", system_stats),
    (r"^nats request kryten\.userstats\.command '\{\"command\": \"user\.stats\".*420GUser7", user_in_channel),
    (
        r"^nats request cytube\.query\.userstats\.cytu\.be\.leaderboard\.emotes '\{\"limit\": 5\}'$",
        emotes_top5,
    ),
    (r"^\.venv/bin/python examples/query_example\.py$", query_example),
    (r"^\.venv/bin/python examples/metrics_example\.py$", metrics_example),
    (r"^python: .*UserstatsClient\.connect", client_script),
    (r"^python: .*nats\.connect", nats_py_script),
    (r"^\.venv/bin/userstats-ingest rebuild$", swapped),
    (r"^\.venv/bin/userstats-ingest rebuild --to-seq \d+ --output \S+$", rebuilt_to_file),
    (r"^\.venv/bin/userstats-ingest dead-letters --limit \d+$", dead_letters),
    (r"^\.venv/bin/userstats-sim --count \d+$", published),
]


def check_for(command: str) -> Callable[[str], None]:
    found = [check for pattern, check in CHECKS if re.search(pattern, command, re.S)]
    assert found, f"README command without a check in {__file__}: {command}"
    return found[0]


# --- running them in a network namespace of their own ----------------------------------------


class Namespace:
    """A private network namespace (loopback only), held open by a sleeping process."""

    def __init__(self) -> None:
        missing = [t for t in ("unshare", "nsenter", "ip", "curl", "make") if not shutil.which(t)]
        if missing:  # .ci/run installs them on CI
            pytest.skip(f"needs {', '.join(missing)} (util-linux, iproute2, curl, make)")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 1200"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "up":
            err = self.holder.communicate(timeout=10)[1]
            pytest.skip(f"cannot make a network namespace here (root needed): {err.strip()}")

    def wrap(self, args: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *args]

    def close(self) -> None:
        self.holder.kill()
        self.holder.communicate()  # waits, and closes its pipes


@dataclass
class Session:
    """A user's terminals: commands run with bash in the workspace, inside the namespace."""

    ns: Namespace
    home: Path
    env: dict[str, str]
    transcript: list[str] = field(default_factory=list)
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, command: str, timeout: float = 120) -> tuple[int, str, str]:
        started = time.monotonic()
        out = subprocess.run(
            self.ns.wrap(["bash", "-c", command.replace("/tmp/", f"{self.home}/tmp/")]),
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.transcript.append(
            f"$ {command}  [{time.monotonic() - started:.1f} s, exit {out.returncode}]\n"
            f"{out.stdout[-3000:]}{out.stderr[-2000:]}"
        )
        return out.returncode, out.stdout, out.stderr

    def start(self, command: str, log: str) -> subprocess.Popen[bytes]:
        with (self.home / log).open("ab") as f:
            proc = subprocess.Popen(
                self.ns.wrap(["bash", "-c", command]),
                cwd=self.home,
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as in a terminal: Ctrl-C reaches it all
            )
        self.background.append(proc)
        self.transcript.append(f"$ {command} &  (pid {proc.pid}, output in {log})")
        return proc

    def ctrl_c(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout)
        self.background.remove(proc)
        return code

    def until(self, command: str, check: Callable[[str], None], within: float) -> float:
        """Run `command` until its answer passes `check`; seconds it took."""
        started = time.monotonic()
        while True:
            code, out, err = self.run(command)
            try:
                assert code == 0, f"exit {code}: {err[-2000:]}"
                check(out)
                return time.monotonic() - started
            except (AssertionError, ValueError, KeyError, TypeError, SyntaxError, IndexError):
                if time.monotonic() - started > within:
                    raise
            time.sleep(0.5)

    def wait_healthy(self, within: float = 60) -> None:
        urls = "http://127.0.0.1:28282/health http://127.0.0.1:28283/health"
        self.until(f"for u in {urls}; do curl -sf $u >/dev/null || exit 1; done", lambda _: None, within)


def workspace(tmp: Path) -> Path:
    """A directory that looks like this checkout to the README's commands."""
    home = tmp / "checkout"
    (home / "tests" / "reference").mkdir(parents=True)
    (home / "tmp").mkdir()
    for name in (".venv", "Makefile", "pyproject.toml", "requirements.lock", "examples"):
        (home / name).symlink_to(ROOT / name if name != ".venv" else VENV)
    for pins in (ROOT / "tests" / "reference").glob("*.txt"):  # the Makefile's install stamp reads them
        (home / "tests" / "reference" / pins.name).symlink_to(pins)
    return home


def nats_cli_stand_in(bindir: Path) -> None:
    bindir.mkdir()
    script = bindir / "nats"
    script.write_text(
        f"#!{sys.executable}\n"
        '"""Stand-in for the nats CLI: `nats request SUBJECT BODY`, sent with nats-py."""\n'
        "import asyncio, os, sys\n"
        "import nats\n"
        "async def main() -> None:\n"
        "    verb, subject, body = sys.argv[1:4]\n"
        "    assert verb == 'request', verb\n"
        "    nc = await nats.connect(os.environ.get('NATS_URL', 'nats://127.0.0.1:4222'))\n"
        "    msg = await nc.request(subject, body.encode(), timeout=5)\n"
        "    print(msg.data.decode())\n"
        "    await nc.close()\n"
        "asyncio.run(main())\n"
    )
    script.chmod(0o755)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    ns = Namespace()
    home = workspace(tmp_path)
    nats_cli_stand_in(tmp_path / "bin")
    drop = ("USERSTATS_", "NATS_", "MAKE", "MFLAGS", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = f"{tmp_path / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    s = Session(ns, home, env)
    try:
        yield s
    finally:
        for proc in list(s.background):
            with contextlib.suppress(Exception):
                s.ctrl_c(proc, timeout=30)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        ns.close()
        print("\n".join(s.transcript))


# --- the test -----------------------------------------------------------------------------


def test_the_readme_commands_work_as_written(session: Session) -> None:
    text = (ROOT / "README.md").read_text()
    quick = section(text, "Quick start")
    restart = section(text, "Stop it, publish, start it again: nothing lost, nothing counted twice")
    nats_cli = section(text, "With the nats CLI")
    python = section(text, "From Python")
    rebuild = section(text, "Rebuilding the tables")

    demo_block, asks = (commands(b) for b in blocks(quick, "sh")[:2])
    assert demo_block == ["make demo"], demo_block
    snippets = blocks(python, "python")
    assert len(snippets) == 2, "the client script and the nats-py snippet"
    to_check = [
        *asks,
        *commands(blocks(nats_cli, "sh")[0]),
        *inline(python, r"^\.venv/bin/python examples/\S+\.py$"),
        *(f"python: {s}" for s in snippets),
        *commands(blocks(rebuild, "sh")[0]),
    ]
    checks = [(c, check_for(c)) for c in to_check]  # every command has a check, before anything runs

    demo = session.start(demo_block[0], "demo.log")
    started = time.monotonic()
    session.wait_healthy()
    healthy = time.monotonic() - started
    timings = []
    for i, (written, check) in enumerate(checks):
        command = written
        if written.startswith("python: "):
            script = session.home / f"snippet{i}.py"
            script.write_text(written.removeprefix("python: "))
            command = f".venv/bin/python {script.name}"
        # "Every answer has figures within a few seconds of starting"
        timings.append(
            (command, session.until(command, check, within=max(5, 20 - (time.monotonic() - started))))
        )
    # ingest's own figures after that online rebuild, at 200 events/s: one scrape agrees with itself
    _, text, _ = session.run("curl -s http://127.0.0.1:28283/metrics")
    figures_now = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("userstats_ingest")
    )
    checkpoint = float(figures_now["userstats_ingest_checkpoint_seq"])
    assert float(figures_now["userstats_ingest_events_projected_total"]) <= checkpoint, figures_now
    assert float(figures_now["userstats_ingest_stream_last_seq"]) >= checkpoint, figures_now
    assert float(figures_now["userstats_ingest_lag_events"]) == (
        float(figures_now["userstats_ingest_stream_last_seq"]) - checkpoint
    )
    interrupted = (0, -signal.SIGINT)  # make itself reports the Ctrl-C; what it ran stops cleanly
    assert session.ctrl_c(demo) in interrupted, (session.home / "demo.log").read_text()[-3000:]
    log = (session.home / "demo.log").read_text()
    bad = [line for line in log.splitlines() if any(w in line for w in ("Traceback", " WARNING ", " ERROR "))]
    assert not bad, "\n".join(bad[:20])
    assert "ingest stopped at seq" in log and "did not stop" not in log, log[-3000:]
    # a snapshot every 2 s, but one INFO line a minute about them
    assert len(re.findall(r"INFO +ingest\.snapshotter: snapshot \S+ published", log)) <= 2, log[-3000:]
    print(
        f"make demo healthy after {healthy:.1f} s; " + ", ".join(f"{c[:40]}: {t:.1f} s" for c, t in timings)
    )

    # Stop it, publish, start it again
    steps = [commands(b) for b in blocks(restart, "sh")]
    (nats_server, run, sim, ask), (sim_again,) = steps
    assert LONG_RUNNING.search(nats_server) and LONG_RUNNING.search(run), steps
    again = inline(restart, r"^NATS_URL=\S+ make run")
    assert again == [run], "the restart is the same command"
    session.start(nats_server, "nats.log")
    session.until("(exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null", lambda _: None, 20)
    first = session.start(run, "run1.log")
    session.wait_healthy()
    code, out, err = session.run(sim)
    assert code == 0, err
    check_for(sim)(out)

    def figures(out: str) -> tuple[int, int]:
        d = data(out)
        return d["total_messages"], d["events_processed"]

    seen: list[tuple[int, int]] = []

    def settled(out: str) -> None:  # the replica has applied all 5000 events
        system_stats(out)
        seen.append(figures(out))
        assert len(seen) >= 2 and seen[-1] == seen[-2], seen

    session.until(ask, settled, within=20)
    assert session.ctrl_c(first) in interrupted, (session.home / "run1.log").read_text()[-3000:]
    code, out, err = session.run(sim_again)  # userstats is down; NATS stores them
    assert code == 0 and "published 5000 events" in err, err
    check_for(sim_again)(out)
    session.start(again[0], "run2.log")
    session.wait_healthy()

    def doubled(out: str) -> None:
        assert figures(out) == (2 * seen[-1][0], 2 * seen[-1][1]), (figures(out), seen[-1])

    took = session.until(ask, doubled, within=30)
    print(f"after the restart, system.stats showed exactly double within {took:.1f} s")
