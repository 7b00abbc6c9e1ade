"""Text and numbers that come from clients: how to read them and how to show them.

One place for both, so every log line, error message and id parser applies the same rules:

* **Showing.** Client text in a log line could forge lines of its own (CR, LF) or hide
  what follows (NUL, escapes); in an error message it could be long. :func:`loggable` keeps
  printable characters, makes the rest ``?`` and bounds the length.
* **Reading numbers.** ``str.isdigit()`` is true for ``²`` and ``①``, which ``int()``
  refuses, and ``int()`` takes ``٣`` (Arabic-Indic three), ``_`` separators, signs and
  spaces. A number from a client is ASCII digits only, with a bound on their count (Python
  also refuses to convert more than 4300 digits).
"""

from __future__ import annotations

import re

__all__ = ["ascii_int", "loggable", "shown"]

_ASCII_DIGITS = re.compile(r"[0-9]+")


def loggable(text: str, limit: int = 200) -> str:
    """Client-chosen text, safe in a log line: printable characters only, at most ``limit``."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():  # the usual case; and the same string, not a copy held by every stream's log line
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def shown(text: str, limit: int = 60) -> str:
    """Client text quoted for an error message, or ``""`` when nothing printable is left."""
    kept = "".join(c for c in text if c.isprintable())[:limit]
    return repr(kept) if kept else ""


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None."""
    if len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)
