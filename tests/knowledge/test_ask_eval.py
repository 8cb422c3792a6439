"""The labelled questions as a regression gate: ranking changes that lose accuracy fail CI.

Each file of knowledge/questions/ is scored on indexes built without its own questions (what a question
nobody asked before meets).  The decision was fit on all of them (bench/ask_fit.py), so these are tuning
figures; bench/README.md has the held-out ones and how they were measured.
"""

from pathlib import Path

import pytest
import yaml

from knowledge import labelled, load_index
from knowledge.text import clean_chat

HOLDOUT = Path(__file__).with_name("ask_holdout.yaml")
HELDOUT_BLIND = Path(__file__).with_name("ask_heldout_blind.yaml")
VALIDATION = Path(__file__).with_name("ask_validation_blind7.yaml")
BY_NAME = {p.name: p for p in labelled.FILES}


def figures(index, questions, one_guide=False):
    """Top-1 over the questions whose section the index has, and the share of off-topic ones unanswered.

    With one guide, as bench/ask_bench.py counts it, only that guide's sections are on topic (the built-in
    entries of the other guide's sections answer too, but are not what the figure is about).
    """
    sections = {s.id for s in index.sections if not one_guide or s.guide != "builtin"}
    on = [{**q, "expect": index.section(q["expect"]).id}  # an alias id names its section
          for q in questions if q["expect"] and index.section(q["expect"])
          and index.section(q["expect"]).id in sections]
    off = [q for q in questions if not q["expect"]]
    top1 = sum(bool(m := index.ask(q["q"])) and m[0].section == q["expect"] for q in on)
    rejected = sum(index.ask(q["q"]) == [] for q in off)
    return top1 / len(on), rejected / len(off)


@pytest.fixture(scope="module")
def guides(guide_path, modern_path):
    return {"old": [guide_path], "both": [guide_path, modern_path], "built-in": []}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_question_file_shape(name):
    questions = labelled.read(BY_NAME[name])
    assert len(questions) >= 150
    assert sum(q["expect"] is None for q in questions) >= 30
    assert all(set(q) == {"q", "expect", "kind"} for q in questions)


def _said(text: str) -> str:
    """A question as the index reads it: markup, case and spacing aside."""
    return " ".join(clean_chat(text).casefold().split())


def test_held_out_questions_are_never_learned_from():
    kept_apart = {HOLDOUT.resolve(), HELDOUT_BLIND.resolve(), VALIDATION.resolve()}
    held = {_said(q["q"]) for path in kept_apart for q in yaml.safe_load(path.read_text())["questions"]}
    learned = {_said(q["q"]) for path in labelled.FILES for q in labelled.read(path)}
    assert held and not held & learned
    assert not {p.resolve() for p in labelled.FILES} & kept_apart


def test_every_labelled_section_exists(both_index):
    unknown = {q["expect"] for p in labelled.FILES for q in labelled.read(p) if q["expect"]
               and both_index.section(q["expect"]) is None}
    assert not unknown


# Measured (bench/ask_bench.py) minus a margin: each file on the indexes without it.
@pytest.mark.parametrize("name, index, top1_min, rejected_min", [
    ("ask_eval.yaml", "both", 0.90, 0.95),
    ("ask_eval.yaml", "old", 0.90, 0.95),
    ("ask_eval.yaml", "built-in", 0.90, 0.95),
    ("ask_tune_blind.yaml", "both", 0.94, 0.95),
    ("ask_tune_blind2.yaml", "both", 0.92, 0.90),
    ("ask_tune_blind3.yaml", "both", 0.90, 0.97),
    ("ask_tune_blind4.yaml", "both", 0.80, 0.97),
    ("ask_tune_blind5.yaml", "both", 0.84, 0.93),
    ("ask_tune_blind6.yaml", "both", 0.84, 0.95),
])
def test_left_out_file(guides, name, index, top1_min, rejected_min):
    path = BY_NAME[name]
    without = load_index(guides[index], questions=labelled.load(exclude=[path]))
    top1, rejected = figures(without, labelled.read(path), one_guide=index == "old")
    assert top1 >= top1_min and rejected >= rejected_min, (top1, rejected)


def test_learning_from_questions_helps_a_file_nobody_asked(guides):
    """The same file on the same guides, with and without the other files' questions in the index."""
    path = BY_NAME["ask_tune_blind4.yaml"]
    questions = [q for q in labelled.read(path) if q["expect"]]
    right = {}
    for label, learned in (("guides only", {}), ("with the other files", labelled.load(exclude=[path]))):
        index = load_index(guides["both"], questions=learned)
        right[label] = sum(bool(s := index._scored(q["q"])) and s[0][1].id == index.section(q["expect"]).id
                           for q in questions)
    assert right["with the other files"] > right["guides only"], right


def test_holdout_does_not_collapse(guide_index):
    top1, rejected = figures(guide_index, yaml.safe_load(HOLDOUT.read_text())["questions"], one_guide=True)
    assert top1 >= 0.85 and rejected >= 0.85, (top1, rejected)
