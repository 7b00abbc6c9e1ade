"""Entity id patterns: the exposed set, per-stream filters and allowlists all use these.

A stream's filter is whatever narrows it: its own ``?entity_id=``/``?domain=`` and, for a
token, the token's ``entities``. Several of them make one :class:`AllOf`, which the hub
treats like a single pattern: it is consulted when a subscriber registers and when an entity
first appears, never per event (the hub's index of entity to subscribers serves each event),
so a token costs a stream nothing on the hot path.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AllOf", "EntityFilter", "EntityPattern", "FilterLimits", "FilterTooLarge", "combine"]


class EntityFilter(Protocol):
    """What the hub and the routes need of a filter: a test, and a text for log lines."""

    def __call__(self, entity_id: str) -> bool: ...

    def describe(self) -> str: ...


class EntityPattern:
    """A set of fnmatch globs over entity ids (``sensor.battery_*``, ``switch.charger``, ``*``).

    All globs compile into one regular expression, so matching costs one call however many
    globs there are. Matching is case-sensitive: Home Assistant entity ids are lower case.
    """

    __slots__ = ("_match", "exact_ids", "globs", "matches_all")

    def __init__(self, globs: Iterable[str]) -> None:
        self.globs = tuple(dict.fromkeys(g for g in globs if g))
        self.matches_all = "*" in self.globs
        # The globs as plain entity ids, when none of them is a pattern.
        self.exact_ids = None if any(c in g for g in self.globs for c in "*?[") else self.globs
        if self.globs:
            self._match = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in self.globs)).match
        else:
            self._match = re.compile(r"(?!)").match

    @classmethod
    def parse(cls, entity_ids: str = "", domains: str = "") -> EntityPattern | None:
        """Build a stream filter from the ``entity_id`` and ``domain`` query parameters.

        Both are comma-separated; a domain ``light`` is the glob ``light.*``. An entity is
        visible when it matches any of them. Returns None when neither narrows anything.
        """
        globs = [g.strip() for g in entity_ids.split(",") if g.strip()]
        globs += [f"{d.strip()}.*" for d in domains.split(",") if d.strip()]
        return cls(globs) if globs else None

    def __call__(self, entity_id: str) -> bool:
        return self._match(entity_id) is not None

    def describe(self) -> str:
        return ",".join(self.globs) or "(nothing)"

    def __repr__(self) -> str:
        return f"EntityPattern({list(self.globs)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityPattern) and other.globs == self.globs

    def __hash__(self) -> int:
        return hash(self.globs)


class FilterTooLarge(ValueError):
    """A stream filter past a limit. ``str()`` names the parameters and the setting."""


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """The most a request's ``?entity_id=`` and ``?domain=`` may hold together.

    Their globs compile into one regular expression on the event loop, at a cost that grows
    with their length (a 60 KB list held the loop 0.4 s): so the count and the length are
    capped (``MAX_FILTER_PATTERNS``, ``MAX_FILTER_LENGTH``), and nothing is split or
    compiled past them.
    """

    patterns: int = 100
    length: int = 2048

    def parse(self, query: Mapping[str, str]) -> EntityPattern | None:
        """:meth:`EntityPattern.parse` of the query's filters. Raises :class:`FilterTooLarge`."""
        entity_ids, domains = query.get("entity_id", ""), query.get("domain", "")
        if len(entity_ids) + len(domains) > self.length:
            message = f"entity_id and domain: at most {self.length} characters together (MAX_FILTER_LENGTH)"
            raise FilterTooLarge(message)
        count = sum(1 for part in (*entity_ids.split(","), *domains.split(",")) if part.strip())
        if count > self.patterns:
            message = f"entity_id and domain: at most {self.patterns} patterns together (MAX_FILTER_PATTERNS)"
            raise FilterTooLarge(message)
        return EntityPattern.parse(entity_ids, domains)


class AllOf:
    """The entities that every one of ``parts`` matches: the intersection of their sets."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[EntityFilter]) -> None:
        self.parts = tuple(parts)

    def __call__(self, entity_id: str) -> bool:
        return all(part(entity_id) for part in self.parts)

    def describe(self) -> str:
        return " & ".join(f"({part.describe()})" if isinstance(part, AllOf) else part.describe() for part in self.parts)

    def __repr__(self) -> str:
        return f"AllOf({list(self.parts)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AllOf) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)


def combine(*filters: EntityFilter | None) -> EntityFilter | None:
    """One filter for everything that narrows a view; None when nothing does.

    ``None`` and ``*`` narrow nothing and are left out, so a token that sees everything and
    a stream without ``?entity_id=`` stays an unfiltered subscriber (the hub's cheapest kind).
    """
    parts = [f for f in filters if f is not None and not (isinstance(f, EntityPattern) and f.matches_all)]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return AllOf(parts)
