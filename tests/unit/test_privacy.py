"""What the projection keeps of private messages and chat text, and the captured subject set."""

from __future__ import annotations

import random
from typing import Any

import duckdb
import pytest
from userstats.shared import apply, schema
from userstats.shared import events as ev
from userstats.shared.projection import CAPTURED_SUBJECTS, HANDLED_EVENTS, Projector, is_pm_subject
from userstats.shared.subjects import event_subject
from userstats.sim.generator import Simulator

from tests.projection_helpers import Log

MARKER = "zebra-quartz-7781"


def run(messages: list[tuple[int, str, bytes, int]], reload_after: int = 0) -> dict[str, list[Any]]:
    """Project (seq, subject, data, time) in order (seqs may have holes); every table, as rows."""
    con = duckdb.connect(":memory:")
    apply.create_schema(con)
    p = Projector()
    for i, (seq, subject, data, t) in enumerate(messages, 1):
        p.project(seq, subject, data, t)
        if i == reload_after:
            apply.apply_batch(con, p.take_delta(), p.last_seq, p.last_event_us)
            p = Projector(apply.load_state(con), p.last_seq, p.last_event_us)
    apply.apply_batch(con, p.take_delta(), p.last_seq, p.last_event_us)
    out = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in schema.ALL_TABLE_NAMES}
    out[schema.CHECKPOINT_TABLE] = con.execute(f"SELECT seq FROM {schema.CHECKPOINT_TABLE}").fetchall()
    con.close()
    return out


def pm_log() -> Log:
    log = Log().join("alice").chat("alice", f"hello {MARKER}-chat")
    log.at(5).pm({"username": "alice", "msg": f"secret {MARKER}", "to": "Bot"})
    log.at(6).chat("bob", "alice++")
    log.at(7).pm({"username": "alice", "msg": f"again {MARKER}", "to": "Bot"})
    return log.at(8).chat("bob", "bye")


def seqd(log: Log) -> list[tuple[int, str, bytes, int]]:
    return [(i, s, d, t) for i, (s, d, t) in enumerate(log.messages, 1)]


def has_marker(tables: dict[str, list[Any]], marker: str = MARKER) -> bool:
    return marker in repr(tables)


def test_a_pm_counts_once_from_its_journal_event_whether_the_raw_one_is_there_or_not() -> None:
    full = seqd(pm_log())
    raw_pm_seqs = [seq for seq, s, _, _ in full if is_pm_subject(s)]
    assert len(raw_pm_seqs) == 2
    live = run(full)
    erased = run([m for m in full if m[0] not in raw_pm_seqs])  # what a rebuild sees after the deletes
    assert live == erased
    assert live["counters"] and ("pm", "alice", "", "", "", 0, 2, 0) in live["counters"]
    assert live["pm_erase_queue"] == []
    assert not has_marker(live)


def test_raw_pms_wait_in_the_erase_queue_without_text_and_count_nothing() -> None:
    log = Log().pm({"username": "alice", "msg": f"secret {MARKER}"})
    raw_only = seqd(log)[:1]
    tables = run(raw_only)
    assert [r[1:] for r in tables["pm_erase_queue"]] == [("alice", raw_only[0][3], "", "")]
    assert not [r for r in tables["counters"] if r[0] == "pm"]
    assert tables["users"] == []
    assert not has_marker(tables)


def test_a_journal_event_appended_twice_counts_once() -> None:
    log = pm_log()
    events = seqd(log)
    again = [m for m in events if m[1] == "userstats.journal.pm"]
    n = len(events)
    replay = events + [(n + i + 1, s, d, t) for i, (_, s, d, t) in enumerate(again)]
    tables = run(replay, reload_after=n)
    assert ("pm", "alice", "", "", "", 0, 2, 0) in tables["counters"]
    assert ("counter", "", "", "", "pm_repeats", 0, 2, 0) in tables["counters"]


def test_a_pm_dead_letter_keeps_no_text_and_comes_with_its_journal_event() -> None:
    subject = event_subject("420Grindhouse", "pm")
    raw = (1, subject, f'{{"event_name": "pm", "payload": "{MARKER}"'.encode(), 5)
    held = run([raw])
    assert held["dead_letters"] == []
    (queued,) = held["pm_erase_queue"]
    assert queued[0] == 1 and queued[1] == "" and queued[3] == subject and queued[4]
    assert not has_marker(held)
    pm = ev.PmRedacted(ev.from_us(5), 1, "", subject, queued[4])
    journal = (2, "userstats.journal.pm", ev.encode(pm), 6)
    live, erased = run([raw, journal]), run([journal])
    assert live == erased
    assert [(r[0], r[1], r[3]) for r in live["dead_letters"]] == [(1, subject, b"")]
    assert ("counter", "", "", "", "dead_letters", 0, 1, 0) in live["counters"]
    assert live["pm_erase_queue"] == []
    assert not has_marker(live)


def test_recent_chat_keeps_a_digest_not_the_text_and_still_drops_the_backlog() -> None:
    log = Log().chat("alice", f"line {MARKER}", time_ms=42).chat("alice", f"line {MARKER}", time_ms=42)
    tables = run(seqd(log))
    assert not has_marker(tables)
    assert ("message", "alice", "420Grindhouse", "cytu.be", "", 0, 1, 0) in tables["counters"]


def test_the_stream_captures_exactly_the_handled_events_and_the_journal() -> None:
    assert len(CAPTURED_SUBJECTS) == len(HANDLED_EVENTS) + 1
    for name in ("chatMsg", "pm", "addUser", "userLeave", "setAFK", "setUserMeta", "userlist"):
        subject = event_subject("Some Channel.tv", name)
        assert f"kryten.events.cytube.*.{subject.rsplit('.', 1)[1]}" in CAPTURED_SUBJECTS
    for ignored in ("mediaUpdate", "usercount", "playlist", "setCurrent", "queue", "setPlaylistMeta"):
        assert event_subject("c", ignored).rsplit(".", 1)[1] not in HANDLED_EVENTS
    assert "userstats.journal.>" in CAPTURED_SUBJECTS
    assert ev.PmRedacted.__struct_config__.tag == "pm"


# --- what ingest leaves in the stream, retries and elections included -------------------

Message = tuple[int, str, bytes, int]  # (seq, subject, data, stream time), seqs may have holes
BOOKKEEPING_OF_THE_LOG = ("journal_events", "pm_repeats")  # count the log's messages themselves
NEWCOMER = "FirstSeenInAPm"


def ingest_log(seed: int, retried: bool) -> list[Message]:
    """Simulator events as ingest leaves them in the stream. An election lost a window of
    events, and a newcomer's first stored event is a PM. Each raw PM gets its "pm" journal
    event a few messages later, in raw-seq order (erase_pms appends them one after the other)
    and is then deleted (a hole), or survives next to it (its delete timed out). With
    `retried`, some journal events are stored again later (an append retried after the
    dedupe window) at seqs that are holes in the clean log, so everything else keeps its seq."""
    rnd = random.Random(seed)
    newcomer = Log().pm({"username": NEWCOMER, "msg": "hi", "to": "Bot"}).chat(NEWCOMER, "hello")
    events = [(s, d) for s, d, _ in newcomer.messages if s != "userstats.journal.pm"]  # its PM, a line
    sim = list(Simulator(seed=seed, users_per_channel=40, step_us=100_000).events(3_000))
    events += sim[:200] + sim[700:]  # 200..699 were published while the stream had no leader
    out: list[Message] = []
    pending: list[ev.PmRedacted] = []
    appended: list[ev.PmRedacted] = []
    seq = 0

    def put(subject: str, data: bytes, t: int, keep: bool = True) -> None:
        nonlocal seq
        seq += 1
        if keep:
            out.append((seq, subject, data, t))

    for i, (subject, data) in enumerate(events):
        t = 1_764_950_400_000_000 + i * 100_000
        if is_pm_subject(subject):
            env = ev.ENVELOPE_DECODER.decode(data)
            sender = ev.CHAT_DECODER.decode(env.payload).sender()
            pending.append(ev.PmRedacted(env.timestamp or ev.from_us(t), seq + 1, sender))
            put(subject, data, t, keep=rnd.random() < 0.2)  # most deletes went through
        else:
            put(subject, data, t)
        if pending and (i == 1 or rnd.random() < 0.05):  # a batch committed: its PMs' events
            for e in pending:
                put("userstats.journal.pm", ev.encode(e), t)
            appended += pending
            pending = []
        if appended and rnd.random() < 0.02:  # an append retried and stored a second time
            put("userstats.journal.pm", ev.encode(rnd.choice(appended)), t, keep=retried)
    for e in pending:
        put("userstats.journal.pm", ev.encode(e), t)
    return out


def replay(messages: list[Message], batch: int, reload: bool) -> dict[str, list[Any]]:
    """Every table after projecting `messages` in batches, reloading the State from the
    tables after each batch when `reload` (a restarted ingest)."""
    con = duckdb.connect(":memory:")
    apply.create_schema(con)
    p = Projector()
    for i in range(0, len(messages), batch):
        for seq, subject, data, t in messages[i : i + batch]:
            p.project(seq, subject, data, t)
        apply.apply_batch(con, p.take_delta(), p.last_seq, p.last_event_us)
        if reload:
            p = Projector(apply.load_state(con), p.last_seq, p.last_event_us)
    out = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in schema.ALL_TABLE_NAMES}
    out[schema.CHECKPOINT_TABLE] = con.execute(f"SELECT seq FROM {schema.CHECKPOINT_TABLE}").fetchall()
    con.close()
    return out


def without_log_bookkeeping(tables: dict[str, list[Any]]) -> dict[str, list[Any]]:
    counters = [r for r in tables["counters"] if not (r[0] == "counter" and r[4] in BOOKKEEPING_OF_THE_LOG)]
    return {**tables, "counters": counters}


@pytest.mark.parametrize(("batch", "reload"), [(29, True), (64, False), (500, True), (10**6, False)])
def test_retried_and_surviving_redactions_give_the_tables_of_the_clean_log(batch: int, reload: bool) -> None:
    """Live ingest, a restarted one and a rebuild cut the same stream into different batches;
    an append retried past the dedupe window leaves a second journal event. The tables are
    those of the clean log in one batch, but for the counters of the log's own messages."""
    clean, retried = ingest_log(5, retried=False), ingest_log(5, retried=True)
    assert clean[-1][0] == retried[-1][0] and len(retried) > len(clean)  # the same seqs, more messages
    want = replay(clean, 10**6, reload=False)
    got = replay(retried, batch, reload)
    assert without_log_bookkeeping(got) == without_log_bookkeeping(want)
    repeats = len(retried) - len(clean)
    assert ("counter", "", "", "", "pm_repeats", 0, repeats, 0) in got["counters"]
    surviving = sum(is_pm_subject(s) for _, s, _, _ in retried)
    assert 0 < surviving < sum(r[-2] for r in got["counters"] if r[0] == "pm")  # most were deleted
    assert got["pm_erase_queue"] == []
    # seen first in a PM, counted at its journal event after the user's chat line: first_seq
    # is the raw PM's seq however the log was cut
    assert [r[3] for r in got["users"] if r[0] == NEWCOMER] == [1]
