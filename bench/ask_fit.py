"""Fit the answer/abstain decision (knowledge.index.DECISION) and cross-validate it against the old line.

    python bench/ask_fit.py [--set PATH]... [--target 0.98] [--folds 5] [--repeats 10]

Features are `Index.features` of each question's best section on each of the five indexes bench/ask_bench.py
scores (built-in only, each guide alone, both, and both with no labelled question on a section: "unlearned"),
a row per index where the question counts as it does there; each file's questions are scored on indexes that
leave that file's questions out (knowledge.labelled), as a question nobody asked before meets the index.
(The rows of the other files were scored on indexes that hold this file's questions: the leave-one-set-out
figures below are not wholly unseen.)
The label is whether the question is on topic (a guide section answers it): answering an on-topic question costs nothing
even when the answer is wrong (abstaining misses it too), answering an off-topic one is the error.  The model
is a logistic regression (class-balanced, L2 on standardised features, plain gradient descent: deterministic),
and its line is the score at which `--target` of the training off-topic questions stay unanswered.

Leave one set out: each question file is scored by a model and line fit on the other files (each file has its
own writer and style: the shift a new set of questions brings, which random folds hide).

Cross-validation: stratified folds (on / off topic) by question, repeated with shuffled folds; the model and
its line are fit on k-1 folds and the held fold is scored (top-1: confident and right, of the on-topic
questions; abstained: unanswered, of the off-topic ones).  The hand rule is refit the same way: a line on
the coverage score, tutorial questions and other meshes never answered.  Last, the model is fit on every
question and printed as the lines to paste into knowledge/index.py.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ask_bench import UNLEARNED, learned, shared_guides  # noqa: E402
from knowledge import labelled, load_index  # noqa: E402
from knowledge.index import DECISION  # noqa: E402

SETS = labelled.FILES
KEYS = list(DECISION)
MATCHED = 0.97  # the abstention at which methods are compared on their pooled out-of-fold margins


def rows(index, paths, one_guide=False) -> list[dict]:
    """A row per question whose section the index has (with one guide, one of that guide's) or off topic."""
    sections = {s.id for s in index.sections if not one_guide or s.guide != "builtin"}
    out = []
    for path in paths:
        for n, q in enumerate(yaml.safe_load(Path(path).read_text())["questions"]):
            expect = q["expect"]
            if expect and index.section(expect):
                expect = index.section(expect).id
            if expect is not None and expect not in sections:
                continue
            scored = index._scored(q["q"])
            f = index.features(q["q"], scored) if scored else {}
            out.append({"id": (str(path), n), "q": q["q"], "expect": expect,
                        "top": scored[0][1].id if scored else None, "f": f,
                        "hand": bool(scored) and index.may_answer(q["q"], scored[0][1])})
    return out


def fit(x, y, l2=1.0, iters=3000, rate=0.5):
    """Logistic regression on standardised features; weights and bias for the raw features."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    balance = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(iters):
        g = (1 / (1 + np.exp(-(z @ w + b))) - y) * balance
        w -= rate * (z.T @ g / len(y) + l2 * w / len(y))
        b -= rate * g.mean()
    return w / sd, b - (mu / sd) @ w


def line(scores, y, target):
    """The lowest score that leaves `target` of the off-topic questions (y == 0) below it."""
    off = np.sort(scores[y == 0])
    return off[max(0, math.ceil(target * len(off)) - 1)] + 1e-9


def cross_validate(method, ids, y, correct, folds, repeats, target, both=None):
    """Folds by question: a question's rows (one per index) are in the same fold.

    Returns mean top-1, mean abstention, the worst repeat's abstention, top-1 at MATCHED abstention, and
    top-1 and abstention over the rows of `both` (a mask: the both-guides index) alone.
    """
    both = np.ones(len(y), bool) if both is None else both
    top1, abstained, margins, both_top1, both_abstained = [], [], [], [], []
    for seed in range(repeats):
        rng = random.Random(seed)
        fold = np.zeros(len(y), int)
        for label in (0, 1):
            members = sorted({ids[i] for i in range(len(y)) if y[i] == label})
            rng.shuffle(members)
            where = {m: j % folds for j, m in enumerate(members)}
            for i in range(len(y)):
                if y[i] == label:
                    fold[i] = where[ids[i]]
        margin = np.zeros(len(y))
        for k in range(folds):
            margin[fold == k] = method(fold != k, fold == k, target)
        answered = margin >= 0
        top1.append((answered & correct)[y == 1].mean())
        abstained.append((~answered)[y == 0].mean())
        both_top1.append((answered & correct)[(y == 1) & both].mean())
        both_abstained.append((~answered)[(y == 0) & both].mean())
        margins.append(margin)
    # Top-1 at one abstention for every method: the out-of-fold margins pooled, cut where MATCHED of the
    # off-topic questions stay unanswered (comparable where the folds' own lines land differently).
    pooled = np.concatenate(margins)
    ys, right = np.tile(y, repeats), np.tile(correct, repeats)
    at = float(((pooled >= line(pooled, ys, MATCHED)) & right)[ys == 1].mean())
    return (float(np.mean(top1)), float(np.mean(abstained)), float(np.min(abstained)), at,
            float(np.mean(both_top1)), float(np.mean(both_abstained)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", dest="sets", metavar="PATH", help="question file (repeatable)")
    parser.add_argument("--target", type=float, default=0.98, help="share of off-topic questions left unanswered")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--index", action="append", choices=["built-in", "old", "modern", "both", "unlearned"],
                        help="only these indexes' rows (repeatable; default all five)")
    parser.add_argument("--keys", help="comma-separated features to fit on (default DECISION's)")
    parser.add_argument("--write", action="store_true", help="write the fitted weights into knowledge/index.py")
    args = parser.parse_args(argv)
    global KEYS
    KEYS = args.keys.split(",") if args.keys else KEYS
    shared = shared_guides()
    old, new = str(shared / "istio-troubleshooting.md"), str(shared / "istio-common-problems")
    data = []
    # What bench/ask_bench.py scores; "unlearned": both guides whose sections have no labelled questions (the
    # unanswered ones still count), as a guide of a user's own meets the index.
    indexes = {"built-in": [], "old": [old], "modern": [new], "both": [old, new], UNLEARNED: [old, new]}
    for name in args.index or list(indexes):
        guides = indexes[name]
        for path in args.sets or SETS:  # each file scored on an index without its own questions (as a new one)
            index = load_index(guides, questions=learned(name, exclude=[path]))
            data += [{**r, "index": name} for r in rows(index, [path], one_guide=len(guides) == 1)]
    ids = [r["id"] for r in data]
    x = np.array([[r["f"].get(k, 0.0) for k in KEYS] for r in data], float)
    y = np.array([r["expect"] is not None for r in data], float)
    correct = np.array([r["expect"] is not None and r["top"] == r["expect"] for r in data])
    coverage = np.where([r["hand"] for r in data], x[:, KEYS.index("score")], 0.0)

    def hand(train, test, target):
        return coverage[test] - line(coverage[train], y[train], target)

    def model(train, test, target):
        w, b = fit(x[train], y[train])
        z = x @ w + b
        return z[test] - line(z[train], y[train], target)

    print(f"{len(set(ids))} questions, {len(data)} rows over {', '.join(args.index or indexes)} "
          f"({int(y.sum())} on topic); "
          f"ranking top-1 (any confidence) {correct[y == 1].mean():.1%}")
    # Leave one set out: each set scored by a line and model fit on the others (set-to-set shift, which
    # random folds hide: every set has its own writer and style).
    sets = sorted({r["id"][0] for r in data})
    if len(sets) > 1:
        print(f"leave one set out (line at {args.target:.0%} of the other sets' off-topic), both guides' rows:")
        for held in sets:
            test = np.array([r["id"][0] == held for r in data])
            both = np.array([r["index"] == "both" for r in data]) if any(r["index"] == "both" for r in data) \
                else np.ones(len(data), bool)
            cells = []
            for name, method in (("hand line", hand), ("model", model)):
                answered = method(~test, test, args.target) >= 0
                mask = both[test]
                t1 = (answered & correct[test])[(y[test] == 1) & mask].mean()
                ab = (~answered)[(y[test] == 0) & mask].mean()
                cells.append(f"{name} {t1:.1%} / {ab:.1%}")
            print(f"  {Path(held).name:<22} top-1 / unanswered: " + "; ".join(cells))
    print(f"cross-validated ({args.folds} folds x {args.repeats}), line at {args.target:.0%} of training off-topic:")
    for name, method in (("hand line", hand), ("model", model)):
        both = np.array([r["index"] == "both" for r in data])
        t1, ab, worst, at, b1, bab = cross_validate(method, ids, y, correct, args.folds, args.repeats, args.target,
                                                    both if both.any() else None)
        print(f"  {name:<10} top-1 {t1:.1%}  off topic unanswered {ab:.1%} (worst repeat {worst:.1%}); "
              f"top-1 {at:.1%} where {MATCHED:.0%} are; both guides' rows: top-1 {b1:.1%}, unanswered {bab:.1%}")
    w, b = fit(x, y)
    b -= line(x @ w + b, y, args.target)  # 0.5 (z = 0) is the line
    weights = ",".join(f'\n    "{k}": {v:.3f}' for k, v in zip(KEYS, w, strict=True))
    code = f"DECISION = {{{weights},\n}}\nDECISION_BIAS = {b:.3f}"
    print(f"\n{code}")
    if args.write:
        path = ROOT / "knowledge" / "index.py"
        text = re.sub(r"DECISION = \{[^}]*\}\nDECISION_BIAS = [-0-9.]+", code, path.read_text())
        path.write_text(text)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
