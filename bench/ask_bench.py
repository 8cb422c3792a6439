"""Measure `Index.ask` per guide: top-1, top-3, off-topic abstention, latency, index build time.

    python bench/ask_bench.py [--set PATH]... [--guide PATH_OR_URL]... [-v]

Question files (`--set`, default every file of knowledge/questions/, the labelled questions the index
learns from: each is scored on indexes built without its questions, though the decision's weights were fit
on all of them) hold
`questions: [{q, expect, kind}]`; `expect` is a section id, or null for a
question no guide answers.  Each set is scored on five indexes: with built-in knowledge
only (no guide configured), the old guide alone, the modern one alone, and both
(what the bot runs with both configured); only the questions whose expected
section the index has count as on topic; a fifth row, "unlearned", is both guides with no labelled question on
their sections (how a guide of a user's own is ranked).  Top-1 counts confident answers only;
top-3 counts the expected section among the (up to) three sections shown, the
confident answers or else the "not sure" suggestions.
With both, the on-topic figures are also split by the guide of the expected
section.  Latency is per answer (p50, p99) on the both-guides index; build time
is the median of five index builds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge import labelled, load_index  # noqa: E402


def shared_guides() -> Path:
    env = os.environ.get("MESHBOT_SHARED_GUIDES")
    if env:
        return Path(env)
    for parent in ROOT.parents:
        if (parent / "shared" / "guides").is_dir():
            return parent / "shared" / "guides"
    sys.exit("shared guides not found: set MESHBOT_SHARED_GUIDES")


def evaluate(index, questions, verbose=False) -> dict:
    """Score an index on question entries; shares in 0..1, `None` when a share has no question."""
    names = {s.id: {s.guide, *s.also_in} for s in index.sections}
    # An expected id may be an alias (the rule-derived id of a heading with an explicit {#anchor}).
    questions = [{**q, "expect": index.section(q["expect"]).id if q["expect"] and index.section(q["expect"])
                  else q["expect"]} for q in questions]
    on = [q for q in questions if q["expect"] is not None]
    off = [q for q in questions if q["expect"] is None]
    per_guide: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # top1, top3, n
    top1 = top3 = abstained = suggested = 0
    times, off_best = [], (0.0, "")  # the highest confidence an off-topic question reaches
    for q in questions:
        started = time.perf_counter()
        answer = index.answer(q["q"], limit=3)
        times.append(time.perf_counter() - started)
        got = [m.section for m in answer.matches]
        if q["expect"] is None:
            scored = index._scored(q["q"])
            if scored and (p := index.confidence(q["q"], scored)) > off_best[0]:
                off_best = (p, q["q"])
            abstained += not got
            suggested += bool(answer.suggestions)
            if got and verbose:
                print(f"ANSWERED {q['q']!r}\n     got {got} ({answer.matches[0].score:.2f})")
            continue
        shown = got or [m.section for m in answer.suggestions]  # what Slack shows: answers, or "not sure" buttons
        hit1, hit3 = bool(got) and got[0] == q["expect"], q["expect"] in shown[:3]
        top1, top3 = top1 + hit1, top3 + hit3
        for guide in names.get(q["expect"], {"?"}):
            row = per_guide[guide]
            row[0], row[1], row[2] = row[0] + hit1, row[1] + hit3, row[2] + 1
        if not hit1 and verbose:
            near = [m.section for m in answer.suggestions]
            print(f"MISS {q['q']!r}\n     expected {q['expect']}\n     got      {got} suggestions {near}")
    share = lambda n, d: n / d if d else None  # noqa: E731
    return {
        "on_topic": len(on),
        "off_topic": len(off),
        "top1": share(top1, len(on)),
        "top3": share(top3, len(on)),
        "abstained": share(abstained, len(off)),
        "off_topic_suggested": share(suggested, len(off)),
        "per_guide": {g: (share(r[0], r[2]), share(r[1], r[2]), r[2]) for g, r in sorted(per_guide.items())},
        "times": times,
        "off_best": off_best,
    }


def _pct(x) -> str:
    return "   n/a" if x is None else f"{x:6.1%}"


UNLEARNED = "unlearned"  # both guides, no labelled question on a section: how a guide of a user's own is ranked


def learned(name: str, exclude=()) -> dict:
    """The labelled questions an index of `name` gets: none on sections for UNLEARNED (off-topic ones kept)."""
    questions = labelled.load(exclude=exclude)
    return {None: questions.get(None, ())} if name == UNLEARNED else questions


def build(name: str, guides: list[str]) -> tuple[object, float]:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        index = load_index(guides, questions=learned(name))
        runs.append(1000 * (time.perf_counter() - started))
    return index, statistics.median(runs)


NEAR_COPY = 0.95


def near_copies(index, questions) -> float:
    """The share of questions one of the index's labelled questions says almost word for word (`Index._nearest`):
    writers reading the same guides write some questions alike, and those are easy."""
    labelled_questions = [q for qs in index._asked for q in qs] + index._unanswered
    return sum(index._nearest(labelled_questions, index._query(q["q"])[1]) >= NEAR_COPY
               for q in questions) / max(1, len(questions))


def learned_from(path: str) -> bool:
    return Path(path).resolve() in {p.resolve() for p in labelled.FILES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", dest="sets", metavar="PATH",
                        help="question file (repeatable; default the tuning set)")
    parser.add_argument("--guide", action="append", help="replace the shared guides (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each miss and each answered off-topic")
    args = parser.parse_args(argv)
    shared = shared_guides()
    if args.guide:
        configs = {"given": args.guide}
    else:
        old, new = str(shared / "istio-troubleshooting.md"), str(shared / "istio-common-problems")
        configs = {"built-in only": [], "old guide": [old], "modern guide": [new], "both guides": [old, new],
                   UNLEARNED: [old, new]}
    built = {name: build(name, guides) for name, guides in configs.items()}
    for name, (_, ms) in built.items():
        print(f"index build, {name}: {ms:.0f} ms (median of 5)")

    for path in args.sets or [str(p) for p in labelled.FILES]:
        questions = yaml.safe_load(Path(path).read_text())["questions"]
        indexes = {name: index for name, (index, _) in built.items()}
        if learned_from(path):  # its own questions are in the index: score it on indexes without them
            indexes = {name: load_index(guides, questions=learned(name, exclude=[path]))
                       for name, guides in configs.items()}
        print(f"\n{path}: {len(questions)} questions" + (" (left out of the index)" if learned_from(path) else ""))
        print(f"  {'index':<13} {'on':>4} {'top-1':>7} {'top-3':>7} {'off':>4} {'abstain':>7}")
        for name, index in indexes.items():
            # One guide: only its questions are on topic. Both (or none: the built-in knowledge is the old
            # guide's, in meshbot's words): every question whose section the index has.
            one = len(configs[name]) == 1
            sections = {s.id for s in index.sections if not one or s.guide != "builtin"}
            asked = [q for q in questions if q["expect"] is None or q["expect"] in sections
                     or (index.section(q["expect"]) and index.section(q["expect"]).id in sections)]
            if args.verbose:
                print(f"--- {name}")
            r = evaluate(index, asked, args.verbose)
            print(f"  {name:<13} {r['on_topic']:>4} {_pct(r['top1'])} {_pct(r['top3'])} {r['off_topic']:>4} "
                  f"{_pct(r['abstained'])}")
            if len(configs[name]) == 2 and name != UNLEARNED:
                for guide, (t1, t3, n) in r["per_guide"].items():
                    print(f"    {guide:<24} {n:>4} {_pct(t1)} {_pct(t3)}")
                times = sorted(r["times"])
                p50 = 1000 * times[len(times) // 2]
                p99 = 1000 * times[min(len(times) - 1, int(0.99 * len(times)))]
                best, text = r["off_best"]
                print(f"    highest off-topic confidence {best:.2f} ({text!r}); line 0.50, margin {0.5 - best:+.2f}")
                print(f"    latency per answer: p50 {p50:.2f} ms, p99 {p99:.2f} ms (target < 50 ms); "
                      f"off-topic with suggestions {_pct(r['off_topic_suggested'])}")
                print(f"    with a near-copy among the index's labelled questions (cosine >= {NEAR_COPY}): "
                      f"{_pct(near_copies(index, questions))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
