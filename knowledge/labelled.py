"""Questions people asked, each labelled with the section that answers it: what the ranker learns from.

Each file of knowledge/questions/ has its own writer (its header says who; all but ask_eval.yaml never read
this package), and the index adds each labelled question to its section as one more field (`Section.asked`),
so a question put the way earlier ones were finds its section even where the guide's words differ.  Off-topic
questions (`expect: null`) feed the answer/abstain decision (`Index.features`' "unanswered").  The bench
scores each file on indexes built without it (`load(exclude=...)`), though the decision's weights were fit
on every file (bench/ask_fit.py).  The held-out and validation sets (tests/knowledge/) are not here and must
never be.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

from .text import clean_chat

FOLDER = Path(__file__).with_name("questions")
FILES = tuple(sorted(FOLDER.glob("*.yaml")))


class QuestionFileError(ValueError):
    pass


@cache
def read(path: Path) -> tuple[dict, ...]:
    """A question file's entries: {q, expect, kind}; QuestionFileError naming the file and entry if malformed."""
    data = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    entries = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise QuestionFileError(f"{path}: no `questions:` list")
    for n, q in enumerate(entries):
        if not (isinstance(q, dict) and isinstance(q.get("q"), str) and "expect" in q
                and (q["expect"] is None or isinstance(q["expect"], str))):
            raise QuestionFileError(f"{path}: question {n + 1} needs `q` (text) and `expect` (a section id or null)")
    return tuple(entries)


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
