"""How a setting is declared: :class:`Setting` and :func:`setting`, and the text derived from one.

config.py declares every setting with :func:`setting` on a field of its ``Settings``; this
module is the shape of such a declaration, apart so that config.py is the declarations
themselves and reads as the list of settings.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from typing import Literal, TypeVar

from .parsers import Secret

__all__ = ["GROUPS", "Group", "Setting", "declarations_of", "setting"]

T = TypeVar("T")

# The sections of the settings table, in its order.
Group = Literal["Home Assistant", "Server", "Stream", "Access and commands", "Scale-out"]
GROUPS: tuple[Group, ...] = typing.get_args(Group)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting as declared on its :class:`Settings` field.

    ``help`` is one line of Markdown: the table shows it as it is, ``--help`` without the markup.
    ``shown`` stands in the table's Default column where the bare value would mislead (``24h``
    rather than ``86400``). ``field``, ``default`` and ``secret`` are read from the field.
    """

    parse: Callable[[str, str], object]
    help: str
    group: Group
    cli: bool = False
    shown: str | None = None
    field: str = ""
    default: object = None
    secret: bool = False

    @property
    def env(self) -> str:
        """The environment variable; lower-cased, the key in the ``CONFIG_FILE``."""
        return self.field.upper()

    @property
    def flag(self) -> str | None:
        return "--" + self.field.replace("_", "-") if self.cli else None

    @property
    def default_markdown(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if value is None or value == ():
            return "*(none)*"
        if isinstance(value, bool):
            return "`true`" if value else "`false`"
        if isinstance(value, tuple):
            return f"`{','.join(value)}`"
        return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"

    @property
    def flag_help(self) -> str:
        """The flag's line in ``--help``: what it is, its variable, its default."""
        text = f"{_plain(self.help)} ({self.env}; default {_plain(self.default_markdown)})"
        return text.replace("%", "%%")  # argparse formats help with %


def _plain(markdown: str) -> str:
    spans = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", markdown).split("`")
    # Between backticks (the odd spans) a * is what the user types; outside, emphasis.
    return "".join(span if i % 2 else span.replace("*", "") for i, span in enumerate(spans))


def setting(
    parse: Callable[[str, str], T], default: T, help: str, *, group: Group, cli: bool = False, shown: str | None = None
) -> T:
    """Declare a :class:`Settings` field; mypy checks that the parser's type is the field's."""
    declared = Setting(parse, help, group, cli, shown)
    return dataclasses.field(default=default, metadata={"setting": declared})


def declarations_of(cls: type) -> tuple[Setting, ...]:
    """The declarations on a dataclass's fields, in their order, completed from each field."""
    types = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        declared = f.metadata.get("setting")
        if isinstance(declared, Setting):  # a field without one is caught by a test, not at import
            secret = Secret in (types[f.name], *typing.get_args(types[f.name]))
            found.append(dataclasses.replace(declared, field=f.name, default=f.default, secret=secret))
    return tuple(found)
