"""Entity id patterns: the exposed set, per-stream filters and allowlists all use these."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

__all__ = ["EntityPattern"]


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

    def __repr__(self) -> str:
        return f"EntityPattern({list(self.globs)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityPattern) and other.globs == self.globs

    def __hash__(self) -> int:
        return hash(self.globs)
