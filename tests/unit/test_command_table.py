"""The one table of commands (shared/commands.py) and what is derived from it."""

from __future__ import annotations

import typing

import pytest
from userstats.ingest.commands import DECIDE
from userstats.query import reads
from userstats.query.answers import READS
from userstats.query.api import READ_COMMANDS
from userstats.shared import commands


def test_every_command_is_declared_once_with_its_structs() -> None:
    names = [c.name for c in commands.COMMANDS]
    assert len(names) == len(set(names))
    assert (
        len(commands.SEED_COMMANDS) == 16
        and {
            "alias.add",
            "alias.delete",
            "alias.update",
            "user.forget",
        }
        == commands.WRITE_COMMANDS
    )
    reads = [c.name for c in commands.COMMANDS if not c.write]
    assert {c for c in reads if c.startswith("user.")} == commands.USER_COMMANDS


def test_every_write_command_has_its_decision_taking_the_declared_parameters() -> None:
    assert set(DECIDE) == commands.WRITE_COMMANDS
    for name in commands.WRITE_COMMANDS:
        assert typing.get_type_hints(DECIDE[name])["p"] is commands.BY_NAME[name].params, name


def test_every_table_read_has_its_read_function_taking_the_declared_parameters() -> None:
    assert set(READS) == set(commands.TABLE_READS)
    for name in commands.TABLE_READS:
        c = commands.BY_NAME[name]
        hints = typing.get_type_hints(READS[name])
        assert hints["p"] is c.params, name
        assert READS[name] is reads.read_function(name)
        module = reads.FAMILIES[name.partition(".")[0]]
        assert READS[name].__module__ == module.__name__, name  # defined in its family's module
        if isinstance(c.reply, type):
            assert hints["return"] is c.reply, name


def test_a_read_function_is_found_in_its_family_module_and_a_missing_one_fails() -> None:
    assert reads.read_function("channel.top_users") is reads.channels.channel_top_users
    assert reads.read_function("system.stats") is reads.overview.system_stats
    for missing in ("channel.no_such_read", "nofamily.stats"):
        with pytest.raises((KeyError, AttributeError)):
            reads.read_function(missing)


def test_the_http_api_serves_the_read_entries_of_the_table_in_its_order() -> None:
    table_reads = [c.name for c in commands.COMMANDS if not c.write]
    assert set(READ_COMMANDS) == set(table_reads) == set(commands.COMMAND_PARAMS) - commands.WRITE_COMMANDS
    assert list(READ_COMMANDS) == table_reads
