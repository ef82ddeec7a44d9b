"""Generates the command reference of QUERY_ENDPOINTS.md from the msgspec Structs.

.venv/bin/python -m userstats.docs           rewrite the generated part of QUERY_ENDPOINTS.md
.venv/bin/python -m userstats.docs --check   exit 1 if it is stale (the tests do this too)
python -m userstats.docs --stdout            print the generated reference (what an installed wheel,
                                             which has no QUERY_ENDPOINTS.md beside it, does by default)
python -m userstats.docs --file PATH         rewrite (or --check) another copy of the document
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
from msgspec import inspect as mi

from userstats.shared.commands import COMMANDS
from userstats.shared.subjects import COMMAND_SUBJECT, SEED_PREFIX

# The document beside the package in a source checkout (or an editable install); a wheel has none.
DOC = Path(__file__).resolve().parents[1] / "QUERY_ENDPOINTS.md"
BEGIN = "<!-- BEGIN GENERATED: python -m userstats.docs -->"
END = "<!-- END GENERATED -->"


def type_name(t: mi.Type, structs: set[type]) -> str:
    if isinstance(t, mi.StrType):
        return f"string (at most {t.max_length} characters)" if t.max_length else "string"
    if isinstance(t, mi.IntType):
        return "integer"
    if isinstance(t, mi.FloatType):
        if t.ge is not None and t.le is not None:
            return f"number ({t.ge:g} to {t.le:g})"
        return "number"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.AnyType):
        return "any"
    if isinstance(t, mi.ListType):
        return f"list of {type_name(t.item_type, structs)}"
    if isinstance(t, mi.DictType):
        return f"object of {type_name(t.value_type, structs)}"
    if isinstance(t, mi.StructType):
        structs.add(t.cls)
        return f"`{t.cls.__name__}`"
    if isinstance(t, mi.UnionType):
        return " or ".join(type_name(x, structs) for x in t.types)
    return str(t)


def _default(f: mi.Field) -> str:
    if f.required:
        return "**required**"
    if f.default is msgspec.UNSET:
        return "(omitted unless set)"
    if f.default is msgspec.NODEFAULT:
        return "only in some replies (see the command)"
    return f"`{msgspec.json.encode(f.default).decode()}`"


def _struct_table(cls: Any, structs: set[type], header: str) -> list[str]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    lines = [f"| {header} | Type | Default |", "|---|---|---|"]
    for f in info.fields:
        lines.append(f"| `{f.encode_name}` | {type_name(f.type, structs)} | {_default(f)} |")
    return lines


def _reply(t: Any, structs: set[type]) -> str:
    return type_name(mi.type_info(t), structs)


def generate() -> str:
    structs: set[type] = set()
    out = [BEGIN, "", "## Commands", ""]
    for c in COMMANDS:
        command, params = c.name, c.params
        out.append(f"### `{command}`")
        out.append("")
        where = [f'`{COMMAND_SUBJECT}` with `"command": "{command}"`']
        if c.seed:
            where.append(f"`{SEED_PREFIX}.<domain>.{command}` (domain from the subject)")
        out.append("Subjects: " + "; ".join(where) + ".")
        if c.write:
            out.append("")
            out.append("A write: the replica forwards it to ingest, which answers once it is projected.")
        out.append("")
        info = mi.type_info(params)
        assert isinstance(info, mi.StructType)
        if info.fields:
            out += _struct_table(params, structs, "Parameter")
        else:
            out.append("No parameters.")
        out.append("")
        out.append(f"Reply `data`: {_reply(c.reply, structs)}.")
        out.append("")
    out += ["## Types", ""]
    done: set[type] = set()
    while structs - done:
        for cls in sorted(structs - done, key=lambda c: c.__name__):
            done.add(cls)
            out.append(f"### `{cls.__name__}`")
            out.append("")
            doc = (cls.__doc__ or "").strip()
            if doc and not doc.startswith(("A base", "Base")):
                out.append(doc.splitlines()[0])
                out.append("")
            out += _struct_table(cls, structs, "Field")
            out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def render(existing: str) -> str:
    start, end = existing.index(BEGIN), existing.index(END) + len(END)
    return existing[:start] + generate().rstrip("\n") + existing[end:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m userstats.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if QUERY_ENDPOINTS.md is stale")
    parser.add_argument(
        "--file", type=Path, help="the document to rewrite or check (default: the checkout's)"
    )
    parser.add_argument("--stdout", action="store_true", help="print the generated reference instead")
    args = parser.parse_args(argv)
    doc: Path | None = args.file or (DOC if DOC.is_file() else None)
    if args.stdout or doc is None:
        if args.check:
            parser.error("--check needs QUERY_ENDPOINTS.md: run it in a source checkout or pass --file")
        sys.stdout.write(generate())
        return
    current = doc.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.exit(f"{doc.name} is stale: run .venv/bin/python -m userstats.docs")
        return
    doc.write_text(wanted, encoding="utf-8")


if __name__ == "__main__":
    main()
