"""The replica's read model answers every user.* read exactly as the tables do.

Random logs (the simulator's mix with a fixed seed, plus aliases, case twins, kudos, imports
and forgets) are projected in batches; each batch's Delta goes to the tables and to the model,
and after each batch every user's reply of every model-backed command is compared with the
same read on the tables.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import duckdb
import msgspec
import pytest
from userstats.query import reads
from userstats.query.model import ModelUsers, ReadModel
from userstats.shared import apply, forget
from userstats.shared import events as ev
from userstats.shared import messages as m
from userstats.shared.projection import Projector
from userstats.sim.generator import Simulator

from tests.projection_helpers import CHANNEL, DOMAIN, T0, Log

Answer = dict[str, Any]


def random_log(seed: int, n: int) -> Log:
    rnd = random.Random(seed)
    log = Log()
    sim = Simulator(seed=seed, users_per_channel=10, step_us=100_000)
    names = [f"user{i}" for i in range(12)]
    added: dict[str, list[str]] = {}  # aliases each name asked for: deletes and updates name them
    for i, (subject, data) in enumerate(sim.events(n)):
        log.messages.append((subject, data, 0))
        if i in (n // 4, n // 2):  # aliases added, then deleted and renamed (a batch later or not)
            for w in names[:4]:
                action = "add" if i == n // 4 else ("delete" if w < "user2" else "update")
                log.journal(
                    ev.AliasChange(
                        timestamp=log.now, action=action, username=w, alias=w + "x", new_alias=w + "y"
                    )
                )
        if rnd.random() < 0.25:  # hand-written events between the simulator's
            log.at(i * 0.1)
            who = rnd.choice(names)
            pick = rnd.random()
            if pick < 0.4:
                spelled = who.upper() if rnd.random() < 0.3 else who
                text = rnd.choice(["hello", f"thanks ++{rnd.choice(names)}", "thank you user3", "x"])
                log.chat(spelled, text, channel=rnd.choice([CHANNEL, CHANNEL.lower(), "other"]))
            elif pick < 0.55:
                log.join(who, channel=rnd.choice([CHANNEL, "other"]), afk=rnd.random() < 0.3)
            elif pick < 0.65:
                log.leave(who, channel=rnd.choice([CHANNEL, "other"]))
            elif pick < 0.85:
                action = rnd.choice(["add", "add", "delete", "update"])
                mine = added.setdefault(who, [])
                alias = (
                    rnd.choice(mine)
                    if mine and action != "add"
                    else rnd.choice(["zed", who + "a", who + "b"])
                )
                new_alias = rnd.choice(["zed", who + "c"])
                if action == "add":
                    mine.append(alias)
                elif action == "update":
                    mine.append(new_alias)
                log.journal(
                    ev.AliasChange(
                        timestamp=log.now, action=action, username=who, alias=alias, new_alias=new_alias
                    )
                )
            elif pick < 0.9:
                log.journal(ev.Forget(timestamp=log.now, user_hash=forget.user_hash(rnd.choice(names[9:]))))
            else:
                log.tick()
    return log


def every_request(model: ReadModel, con: duckdb.DuckDBPyConnection) -> list[tuple[str, Any]]:
    """Every user known to either side (and an unknown one), in each form of each command."""
    names = {
        u for (u,) in con.execute("SELECT DISTINCT username FROM counters WHERE username <> ''").fetchall()
    }
    names |= {
        u
        for (u,) in con.execute(
            "SELECT username FROM users UNION SELECT username FROM user_aliases"
        ).fetchall()
    }
    names |= {s for e in model.users.values() for s in e.spellings}
    names.add("nobody-at-all")
    out: list[tuple[str, Any]] = []
    for n, name in enumerate(sorted(names)):
        variant = name.upper() if n % 2 else name  # any spelling finds the user
        for channel, domain in (
            (None, None),
            (CHANNEL.upper(), None),
            ("other", DOMAIN),
            (None, "else.where"),
        ):
            out.append(("user.stats", m.UserParams(username=variant, channel=channel, domain=domain)))
        channel = (None, CHANNEL, "other")[n % 3]
        out.append(("user.profile", m.UserParams(username=variant, channel=channel)))
        out.append(("user.activity", m.UserParams(username=variant, channel=channel)))
        out.append(("user.messages", m.UserMessagesParams(username=variant, channel=channel)))
        out.append(("user.kudos", m.UserDomainParams(username=variant)))
        out.append(("alias.get", m.AliasUserParams(username=variant)))
    aliases = {a for (a,) in con.execute("SELECT alias FROM user_aliases").fetchall()}
    aliases |= set(model.alias_owners) | {"no-such-alias"}
    for n, alias in enumerate(sorted(aliases)):
        out.append(("alias.find", m.AliasFindParams(alias=alias.upper() if n % 2 else alias)))
    return out


def compare(model: ReadModel, con: duckdb.DuckDBPyConnection, requests: int = 0) -> int:
    sc = reads.Scope(con, DOMAIN, model.event_us)
    src = ModelUsers(model, DOMAIN)
    sql = reads.SqlUsers(sc)
    checked = 0
    for command, params in every_request(model, con):
        read = reads.SOURCE_READS[command]
        want = msgspec.to_builtins(read(sql, params))
        got = msgspec.to_builtins(read(src, params))
        assert got == want, f"{command} {params}"
        checked += 1
    return checked


def run(log: Log, batch: int, check_every: int = 1) -> tuple[ReadModel, duckdb.DuckDBPyConnection, int]:
    con = duckdb.connect(":memory:")
    apply.create_schema(con)
    proj = Projector()
    model = ReadModel()
    checked = 0
    msgs = log.messages
    for b, i in enumerate(range(0, len(msgs), batch)):
        for seq, (subject, data, stream_us) in enumerate(msgs[i : i + batch], i + 1):
            proj.project(seq, subject, data, stream_us)
        delta = proj.take_delta()
        model.apply(delta, proj.last_seq, proj.last_event_us)
        apply.apply_batch(con, delta, proj.last_seq, proj.last_event_us)
        if b % check_every == 0:
            checked += compare(model, con)
    return model, con, checked + compare(model, con)


@pytest.mark.parametrize(("seed", "batch", "every"), [(1, 97, 4), (2, 13, 30), (3, 300, 1), (4, 1, 90)])
def test_the_model_answers_as_the_tables_after_each_batch(seed: int, batch: int, every: int) -> None:
    log = random_log(seed, 700 if batch > 1 else 180)
    model, con, checked = run(log, batch, check_every=every)
    assert checked > 300
    # the log exercised what the model holds: several users with counts, aliases and a forget
    assert sum(1 for e in model.users.values() if e.counters) > 20
    assert any(e.aliases for e in model.users.values())
    assert con.execute("SELECT count(*) FROM forgotten_users").fetchone() != (0,)


def test_a_model_loaded_from_the_tables_answers_as_the_one_kept_from_deltas() -> None:
    log = random_log(5, 1200)
    kept, con, _ = run(log, 250, check_every=100)
    loaded = ReadModel.load(con)
    assert (loaded.seq, loaded.event_us) == (kept.seq, kept.event_us)
    compare(loaded, con)
    for name, e in kept.users.items():
        if e.empty():
            continue
        other = loaded.users[name]
        assert (other.counters, other.spellings, other.aliases) == (e.counters, e.spellings, e.aliases)
    assert loaded.alias_owners == kept.alias_owners
    assert loaded.busiest_channel() == kept.busiest_channel()
    sc = reads.Scope(con, DOMAIN, kept.event_us)
    assert kept.busiest_channel() == reads.busiest_channel(sc.con)


def test_unknown_users_and_channels_read_as_from_the_tables() -> None:
    log = Log()
    log.chat("alice", "hi").at(5).chat("Alice", "thanks ++bob").journal(
        ev.AliasChange(timestamp=T0 + timedelta(seconds=6), action="add", username="alice", alias="ally")
    )
    model, _con, checked = run(log, 1)
    assert checked > 0
    assert model.spelling("ALICE") == "alice"
    assert model.aliases("Alice") == ["ally"]
    assert (model.alias_owner("ALLY"), model.alias_owner("nobody")) == ("alice", None)
