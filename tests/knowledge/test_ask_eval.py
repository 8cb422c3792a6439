"""The tuning set as a regression gate: ranking changes that lose accuracy fail CI.

These are figures on the set the ranker was tuned on; they say nothing about questions nobody tuned for
(bench/README.md has the held-out figures and how they were measured).
"""

from pathlib import Path

import pytest
import yaml

EVAL = Path(__file__).parents[1] / "data" / "ask_eval.yaml"
HOLDOUT = Path(__file__).with_name("ask_holdout.yaml")


def figures(index, path, one_guide=False):
    """Top-1 over the questions whose section the index has, and the share of off-topic ones unanswered.

    With one guide, as bench/ask_bench.py counts it, only that guide's sections are on topic (the built-in
    entries of the other guide's sections answer too, but are not what the figure is about).
    """
    questions = yaml.safe_load(path.read_text())["questions"]
    sections = {s.id for s in index.sections if not one_guide or s.guide != "builtin"}
    on = [{**q, "expect": index.section(q["expect"]).id}  # an alias id names its section
          for q in questions if q["expect"] and index.section(q["expect"])
          and index.section(q["expect"]).id in sections]
    off = [q for q in questions if not q["expect"]]
    top1 = sum(bool(m := index.ask(q["q"])) and m[0].section == q["expect"] for q in on)
    rejected = sum(index.ask(q["q"]) == [] for q in off)
    return top1 / len(on), rejected / len(off)


def test_eval_set_shape():
    questions = yaml.safe_load(EVAL.read_text())["questions"]
    assert len(questions) >= 150
    assert sum(q["expect"] is None for q in questions) >= 30


# The decision holds 98 % of the tuning sets' off-topic questions unanswered (bench/ask_fit.py), which costs
# ask_eval.yaml some top-1 against the older hand line (90 %) and gains it on the blind tuning sets.
@pytest.mark.parametrize("which, top1_min, rejected_min", [
    ("guide_index", 0.85, 0.95),
    ("builtin_index", 0.85, 0.95),
    ("both_index", 0.85, 0.95),
])
def test_eval_accuracy_and_rejection(request, which, top1_min, rejected_min):
    top1, rejected = figures(request.getfixturevalue(which), EVAL, one_guide=which == "guide_index")
    assert top1 >= top1_min, f"top-1 accuracy {top1:.1%}"
    assert rejected >= rejected_min, f"off-topic rejected {rejected:.1%}"


@pytest.mark.parametrize("name, top1_min, rejected_min", [
    ("ask_tune_blind.yaml", 0.83, 0.95),
    ("ask_tune_blind2.yaml", 0.78, 0.93),
])
def test_blind_tuning_sets(both_index, name, top1_min, rejected_min):
    top1, rejected = figures(both_index, EVAL.with_name(name))
    assert top1 >= top1_min and rejected >= rejected_min, (top1, rejected)


def test_holdout_does_not_collapse(guide_index):
    top1, rejected = figures(guide_index, HOLDOUT, one_guide=True)
    assert top1 >= 0.85 and rejected >= 0.85, (top1, rejected)
