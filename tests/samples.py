"""The README's and the docs' code samples, each found by the name its marker gives it.

A fenced block in README.md or docs/*.md sits under ``<!-- sample: NAME [needs=…|output|ci] -->``.
Tests that run a sample take it with ``sample("NAME")`` (tests/test_docs.py looks for exactly that
text to know a sample is run), so moving a sample between pages never breaks the test that runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

MARKED = re.compile(r"<!-- sample: (?P<name>[\w-]+)(?P<kind>[^>]*?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
FENCE = re.compile(r"^```", re.M)


@dataclass(frozen=True)
class Sample:
    file: Path
    name: str
    kind: str  # "" (a test runs it), "needs=home-assistant", "needs=platform", "output" or "ci"
    lang: str
    body: str


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def samples() -> list[Sample]:
    found = []
    for file in documents():
        for m in MARKED.finditer(file.read_text()):
            found.append(Sample(file, m["name"], m["kind"].strip(), m["lang"], m["body"]))
    return found


def sample(name: str) -> str:
    """The body of the one sample called ``name``."""
    bodies = [s.body for s in samples() if s.name == name]
    assert len(bodies) == 1, f"one sample marked <!-- sample: {name} --> in README.md or docs/, found {len(bodies)}"
    return bodies[0]
