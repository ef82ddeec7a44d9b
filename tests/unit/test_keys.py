"""Every projection table has one typed key (shared/keys.py) whose fields are the table's key
columns, in order: apply.py unpacks a key positionally into those columns."""

from __future__ import annotations

import pytest
from userstats.shared import keys, schema
from userstats.shared.delta import Delta
from userstats.shared.projection import Projector
from userstats.sim.generator import Simulator


@pytest.mark.parametrize("spec", schema.TABLES, ids=lambda s: s.name)
def test_the_key_type_names_the_key_columns_in_order(spec: schema.TableSpec) -> None:
    key_type = keys.KEY_TYPES[spec.name]
    assert keys.key_fields(key_type) == tuple(c.name for c in spec.keys)


def test_every_table_and_only_those_has_a_key_type() -> None:
    assert set(keys.KEY_TYPES) == {t.name for t in schema.TABLES}


def test_a_key_is_the_plain_tuple_apply_writes() -> None:
    key = keys.CounterKey("message", "alice", "lobby", "cytu.be", "", 0)
    assert key == ("message", "alice", "lobby", "cytu.be", "", 0)
    assert hash(key) == hash(("message", "alice", "lobby", "cytu.be", "", 0))
    assert (key.channel, key.domain) == (key[2], key[3])


def test_channel_keys_convert_between_the_two_column_orders() -> None:
    chan = keys.ChannelKey(domain="cytu.be", channel="lobby")
    pop = keys.PopulationKey(chan.channel, chan.domain, 0)
    assert (pop.domain, pop.channel) == chan
    assert keys.SessionKey(*chan, "alice")[:2] == chan


def test_the_delta_tables_are_the_schema_tables() -> None:
    d = Delta()
    assert [td.spec for td in d.tables.values()] == list(schema.TABLES)


def test_counting_by_fields_merges_with_the_typed_key_and_stores_it() -> None:
    d = Delta()
    key = keys.CounterKey("message", "alice", "lobby", "cytu.be", "", 0)
    d.counters.count("message", "alice", "lobby", "cytu.be", "", 0)
    d.counters.incr(key, 2)
    d.counters.count("message", "alice", "lobby", "cytu.be", "", 0, 4)
    assert d.counters.upserts == {key: [7, 0]}
    assert all(type(k) is keys.CounterKey for k in d.counters.upserts)


def test_a_projected_batch_holds_only_typed_keys() -> None:
    p = Projector()
    for seq, (subject, data) in enumerate(Simulator(seed=3).events(3_000), 1):
        p.project(seq, subject, data, 0)
    delta = p.take_delta()
    for name, td in delta.tables.items():
        for key in (*td.upserts, *td.deletes):
            assert type(key) is keys.KEY_TYPES[name], (name, key)
