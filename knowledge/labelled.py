"""Questions people asked, each labelled with the section that answers it: what the ranker learns from.

Each file of knowledge/questions/ has its own writer (its header says who; most never read this package), and
the index adds each labelled question to its section as one more field (`Section.asked`), so a question put
the way earlier ones were finds its section even where the guide's words differ.  Off-topic questions
(`expect: null`) teach only the answer/abstain decision (bench/ask_fit.py).  Every figure on these files is
taken with the file itself left out of the index (`load(exclude=...)`); the held-out set,
tests/knowledge/ask_heldout_blind.yaml, is not here and must never be.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

from .text import clean_chat

FOLDER = Path(__file__).with_name("questions")
FILES = tuple(sorted(FOLDER.glob("*.yaml")))


@cache
def read(path: Path) -> tuple[dict, ...]:
    """A question file's entries: {q, expect, kind}."""
    return tuple(yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["questions"])


def load(exclude: Iterable[Path | str] = ()) -> dict[str | None, tuple[str, ...]]:
    """Section id (as the question files name it, maybe an alias) → its questions, Slack markup removed;
    None → the questions no section answers."""
    left_out = {Path(p).resolve() for p in exclude}
    asked: dict[str | None, list[str]] = {}
    for path in FILES:
        if path.resolve() in left_out:
            continue
        for q in read(path):
            asked.setdefault(q["expect"] or None, []).append(clean_chat(q["q"]))
    return {k: tuple(v) for k, v in asked.items()}
