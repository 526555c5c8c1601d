"""docs/configuration.md, rendered from ``Settings``: one section per group (its docstring as the
introduction), one table row per field (variable, old names still read, type, default, limits,
description). The page is never edited by hand; ``make config-docs`` rewrites it::

    python -m app.settings_reference docs/configuration.md    # or: ... > docs/configuration.md

tests/test_settings_reference.py fails when the page and the settings disagree. Nothing here
reads the environment: the defaults are the classes' own, so the page is the same on every machine
(a computed default is described by its factory's docstring, never evaluated).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from app.settings import groups, variable_names

COMMAND = "make config-docs"
_TITLES = {"gbif": "GBIF", "geo_prior": "Geo prior"}
_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    Path: "path",
    SecretStr: "secret",
}
_LIMITS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)

INTRO = f"""\
# Configuration reference

<!-- Generated from app/settings.py by `{COMMAND}`: edit the descriptions there, not here. -->

Every setting is an environment variable, or a line in `.env` in the working directory; names are
case-insensitive. The settings come in groups, one per component that reads them, and a group's
variables share its prefix. Lists are JSON: `SECURITY_API_KEYS='["key-1", "key-2"]'`.

Some variables had another name before the groups (the **Old names** column). The old name is
still read, and the server logs a warning for it at start-up; when both are set, the new name
wins. In code each group is an attribute of `app.settings.Settings` (`Settings().admission.max_queue`),
and a component is handed only its own group.

This page is generated from `app/settings.py` (`{COMMAND}`); a test fails when it is out of date.
"""


def render() -> str:
    """The whole page, ending in one newline."""
    sections = [INTRO, _summary()]
    sections += [_section(group, cls) for group, cls in groups().items()]
    return "\n".join(sections).rstrip("\n") + "\n"


def _title(group: str) -> str:
    return _TITLES.get(group, group.capitalize())


def _prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def _summary() -> str:
    rows = ["| Group | Variables | Class | For |", "|---|---|---|---|"]
    for group, cls in groups().items():
        first = _docstring(cls).split(":")[0]  # each group's docstring opens "what reads it: ..."
        rows.append(
            f"| [{_title(group)}](#{group}) | `{_prefix(cls)}*` | `{cls.__name__}` | {_cell(first)} |"
        )
    return "\n".join(rows) + "\n"


def _section(group: str, cls: type[BaseSettings]) -> str:
    lines = [
        f"## {_title(group)} {{ #{group} }}",
        "",
        _docstring(cls),
        "",
        f"`Settings.{group}`, `{cls.__name__}`: variables `{_prefix(cls)}*`.",
        "",
        "| Variable | Old names | Type | Default | Limits | Description |",
        "|---|---|---|---|---|---|",
    ]
    for field, info in cls.model_fields.items():
        name, old = variable_names(cls, field, info)
        cells = [
            f"`{name}`",
            ", ".join(f"`{alias}`" for alias in old),
            _type(info.annotation),
            _default(info),
            _limits(info),
            _cell(info.description or ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _docstring(cls: type) -> str:
    return " ".join((inspect.getdoc(cls) or "").split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return f"{_type(inner)}, optional"
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if origin is list:
        return f"JSON list of {_type(args[0])}s"
    return _TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return (inspect.getdoc(info.default_factory) or "computed").strip()
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{value!r}`"
    if isinstance(value, int) and value >= 1024 and value % 1024 == 0:
        return f"`{value}` ({_size(value)})"
    return f"`{value}`"


def _size(n: int) -> str:
    for unit in ("KiB", "MiB", "GiB"):
        n //= 1024
        if n < 1024 or n % 1024:
            return f"{n} {unit}"
    return f"{n} GiB"


def _limits(info: FieldInfo) -> str:
    found = [
        f"{sign} {getattr(item, attr)}"
        for kind, attr, sign in _LIMITS
        for item in info.metadata
        if isinstance(item, kind)
    ]
    return ", ".join(found)


def main(argv: list[str]) -> int:
    page = render()
    if argv:
        Path(argv[0]).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
