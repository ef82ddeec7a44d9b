"""The client's methods come from the command table (shared/commands.py, userstats/clientgen.py)."""

from __future__ import annotations

import inspect
import typing

import msgspec
import pytest
from userstats.shared import commands

from userstats import client, clientgen
from userstats.client import UserstatsClient


def test_the_generated_methods_are_current() -> None:
    assert clientgen.TARGET.read_text() == clientgen.render(), "run python -m userstats.clientgen"


@pytest.mark.parametrize("command", commands.COMMANDS, ids=lambda c: c.name)
def test_every_command_has_a_method_typed_by_its_declaration(command: commands.Command) -> None:
    method = getattr(UserstatsClient, command.name.replace(".", "_"))
    hints = typing.get_type_hints(method)
    assert hints.pop("return") == command.reply
    # the parameter Struct's fields (channel.all_stats' limits flattened), as declared
    declared = typing.get_type_hints(command.params)
    expected: dict[str, object] = {}
    for name, t in declared.items():
        if name in clientgen.NOT_SENT.get(command.name, ()):
            continue
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            expected.update(typing.get_type_hints(t))
        else:
            expected[name] = t
    if command.tables and not command.write:
        expected["min_seq"] = int | None
    assert hints == expected
    signature = inspect.signature(method)
    assert list(signature.parameters)[1:] == list(expected)
    defaults: dict[str, object] = {}
    for f in msgspec.structs.fields(command.params):
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            defaults.update({g.name: g.default for g in msgspec.structs.fields(f.type)})
        else:
            defaults[f.name] = f.default
    for name in expected.keys() - {"min_seq"}:
        default = signature.parameters[name].default
        if defaults[name] is msgspec.NODEFAULT:
            assert default is inspect.Parameter.empty, (command.name, name)
        else:
            assert default == defaults[name], (command.name, name)


def test_the_client_decodes_each_reply_into_the_declared_type() -> None:
    for c in commands.COMMANDS:
        assert client._DECODERS[c.name].type == c.reply, c.name
